-- @champion vs @challenger on the same live keys, per run date (shadow_<usecase>, from the score
-- stage): how far apart they score before anyone promotes the challenger.
-- `agreement_at_0_5` is for probabilities: the share of keys both put on the same side of 0.5.
with shadow as (
    select * from shadow_runs
),

final as (
    select
        run_date,
        model_name,
        champion_version,
        challenger_version,
        count(*) as keys,
        avg(champion_score) as champion_mean,
        avg(challenger_score) as challenger_mean,
        avg(challenger_score - champion_score) as mean_diff,
        avg(abs(challenger_score - champion_score)) as mean_abs_diff,
        corr(champion_score, challenger_score) as correlation,
        avg(((champion_score >= 0.5) = (challenger_score >= 0.5))::int) as agreement_at_0_5
    from shadow
    group by all
)

select * from final order by run_date, challenger_version
