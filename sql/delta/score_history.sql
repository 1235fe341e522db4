-- Every published run date's scores, one row per key and run_date, from the predictions Delta table.
-- The table keeps the latest scoring of each run date: `as_published` is false where the run date
-- was scored again after its last publish (a failed publish, a rerun), so those rows were never
-- served; the kept snapshot files hold exactly what was.
with predictions as (
    select * from prediction_runs
),

log as (
    select * from publish_log
),

publishes as (
    select run_date, max(served_from) as last_published_at, count(*) as publishes
    from log
    where action = 'publish'
    group by run_date
),

final as (
    select
        predictions.* exclude (model_run_id),
        publishes.last_published_at,
        predictions.scored_at <= publishes.last_published_at as as_published
    from predictions
    join publishes using (run_date)
)

select * from final
