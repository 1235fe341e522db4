-- One row per key: the published score, its lineage and its freshness at query time.
-- Lookups and BI read this view; `predictions` is the table inside each serving snapshot.
-- With score.explain, `reasons` lists each score's top features (feature, contribution, value).
with predictions as (
    select * from predictions
),

final as (
    select
        * exclude (model_run_id),
        case
            when valid_until < current_timestamp::timestamp then 'expired'
            else 'fresh'
        end as freshness
    from predictions
)

select * from final
