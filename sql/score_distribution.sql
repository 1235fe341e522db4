-- Score deciles per model version: how the published population is spread, for BI dashboards.
with predictions as (
    select model_name, model_version, run_date, score from predictions
),

deciles as (
    select
        model_name,
        model_version,
        run_date,
        ntile(10) over (partition by model_version order by score) as decile,
        score
    from predictions
),

final as (
    select
        model_name,
        model_version,
        run_date,
        decile,
        count(*) as keys,
        min(score) as min_score,
        max(score) as max_score,
        avg(score) as avg_score
    from deciles
    group by all
    order by model_version, decile
)

select * from final
