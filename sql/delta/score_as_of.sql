-- Each key's score over the time it was served: one row per key and publish_log event.
-- The score of key K as of time T:
--   select * from score_as_of where customer_id = 'K'
--     and served_from <= T and (served_until is null or T < served_until)
-- (a date D as of its end of day: T = D + interval 1 day - interval 1 microsecond).
with log as (
    select * from publish_log
),

history as (
    select * from score_history
),

final as (
    select
        history.* exclude (last_published_at),
        log.action,
        log.served_from,
        log.served_until
    from log
    join history
        on history.run_date = log.run_date
        -- a rollback serves the run date's publish again, so the rows are the same ones
        and history.model_version = log.model_version
)

select * from final
