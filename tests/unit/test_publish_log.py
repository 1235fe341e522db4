"""publish_log's pure decisions: what was served, what a rollback walks back to, what was current."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from prescore.serving.publish_log import (
    BACKFILL,
    PUBLISH,
    ROLLBACK,
    Event,
    built,
    current_at,
    rollback_stack,
    rollback_target,
    served_events,
)

pytestmark = pytest.mark.unit
START = datetime(2026, 11, 1, 6)


def event(n: int, action: str, day: int, *, snapshot: str | None = None) -> Event:
    """The n-th event of the log (n minutes after START), of run date 2026-11-<day>."""
    run_date = date(2026, 11, day)
    return Event(
        usecase="churn",
        run_date=run_date,
        action=action,
        predictions_version=day,
        model_name="prescore-churn",
        model_version="1",
        snapshot=snapshot or f"snapshots/{run_date}-v{day}.duckdb",
        checks=None,
        published_at=START + timedelta(minutes=n),
    )


def names(events: list[Event]) -> list[str]:
    return [e.snapshot_name for e in events]


def test_served_events_leave_out_backfills_and_keep_order() -> None:
    log = [event(2, PUBLISH, 3), event(1, PUBLISH, 2), event(3, BACKFILL, 1)]
    served = served_events(log, "snapshots/2026-11-03-v3.duckdb")
    assert names(served) == ["2026-11-02-v2.duckdb", "2026-11-03-v3.duckdb"]


def test_a_last_event_the_pointer_does_not_name_never_took_effect() -> None:
    """A publish killed between logging and moving the pointer: its row is not trusted."""
    log = [event(1, PUBLISH, 1), event(2, PUBLISH, 2)]
    assert served_events(log, "snapshots/2026-11-01-v1.duckdb") == log[:1]
    assert served_events(log[:1], None) == []  # killed before the first pointer existed


def test_rows_with_absolute_paths_from_older_versions_still_match_the_pointer() -> None:
    old = event(1, PUBLISH, 1, snapshot="/old/host/serving/churn/snapshots/2026-11-01-v1.duckdb")
    assert served_events([old], "snapshots/2026-11-01-v1.duckdb") == [old]


def test_rollback_walks_back_one_served_snapshot_per_call() -> None:
    log = [event(i, PUBLISH, i) for i in range(1, 5)]  # v1 .. v4, v4 served
    walked = []
    for n in range(5, 8):
        stack = rollback_stack(log)
        target = rollback_target(stack, [], None)
        assert target is not None
        walked.append(target.predictions_version)
        log.append(event(n, ROLLBACK, target.predictions_version, snapshot=target.snapshot))
    assert walked == [3, 2, 1]
    assert rollback_target(rollback_stack(log), [], None) is None  # nothing before v1


def test_a_publish_after_a_rollback_rolls_back_to_the_rolled_back_to() -> None:
    log = [event(1, PUBLISH, 1), event(2, PUBLISH, 2), event(3, PUBLISH, 3)]
    log.append(event(4, ROLLBACK, 2))
    log.append(event(5, PUBLISH, 4))
    stack = rollback_stack(log)
    assert names(stack) == ["2026-11-01-v1.duckdb", "2026-11-02-v2.duckdb", "2026-11-04-v4.duckdb"]
    assert rollback_target(stack, [], None) == log[1]


def test_rollback_to_a_date_prefers_the_stack_then_a_kept_backfill() -> None:
    log = [event(1, PUBLISH, 2), event(2, PUBLISH, 3), event(3, BACKFILL, 1)]
    stack = rollback_stack(served_events(log, "snapshots/2026-11-03-v3.duckdb"))
    assert rollback_target(stack, log, date(2026, 11, 2)) == log[0]
    assert rollback_target(stack, log, date(2026, 11, 1)) == log[2]
    assert rollback_target(stack, log, date(2026, 11, 3)) is None  # that is the one served
    assert rollback_target(stack, log, date(2026, 10, 1)) is None


def test_current_at_is_the_last_served_event_at_or_before_the_instant() -> None:
    log = [event(1, PUBLISH, 1), event(3, PUBLISH, 2)]
    assert current_at(log, START) is None
    assert current_at(log, START + timedelta(minutes=1)) == log[0]
    assert current_at(log, START + timedelta(minutes=2)) == log[0]
    assert current_at(log, START + timedelta(minutes=9)) == log[1]


def test_built_keeps_publishes_and_backfills_in_order_not_rollbacks() -> None:
    log = [event(1, PUBLISH, 1), event(2, BACKFILL, 2), event(3, ROLLBACK, 1), event(4, PUBLISH, 3)]
    assert [(e.action, e.run_date.day) for e in built(log)] == [
        (PUBLISH, 1),
        (BACKFILL, 2),
        (PUBLISH, 3),
    ]
