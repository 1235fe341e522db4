-- One row per publish or rollback of this use case (what readers were served), with the time it stopped being served.
-- `publish_events` is the publish_log Delta table of one use case (prescore bi-views defines it).
-- Backfills (an older run date published but not served) never moved the pointer: left out.
with events as (
    select * from publish_events
    where action in ('publish', 'rollback')
),

final as (
    select
        run_date,
        action,
        predictions_version,
        model_name,
        model_version,
        snapshot,
        checks,
        published_at as served_from,
        -- the next event moved the pointer: until then this one was what readers saw
        lead(published_at) over (order by published_at) as served_until,
        lead(published_at) over (order by published_at) is null as is_current
    from events
)

select * from final order by served_from
