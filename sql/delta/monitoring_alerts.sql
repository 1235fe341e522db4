-- Every threshold the monitor stage found crossed, newest run date first: what was alerted.
with measures as (
    select * from monitoring_runs
),

final as (
    select run_date, metric, feature, value, threshold, compared, computed_at
    from measures
    where breached
)

select * from final order by run_date desc, metric, feature
