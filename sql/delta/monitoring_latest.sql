-- The monitoring measures of the latest monitored run date (monitoring_<usecase>, from the monitor
-- stage): one row per metric and feature, with its threshold and whether it was crossed.
-- `value` is null where the measure was not taken (`detail` says why: no earlier publish, no labels).
with measures as (
    select * from monitoring_runs
),

final as (
    select run_date, metric, feature, value, threshold, breached, reference_rows, current_rows,
        compared, detail, computed_at
    from measures
    where run_date = (select max(run_date) from measures)
)

select * from final order by breached desc, metric, feature
