"""The publish_log Delta table: one row per publish, backfill or rollback; every read and write of it.

A row's `action` says what happened to readers:

    publish    its snapshot was made current
    rollback   an earlier snapshot was made current again
    backfill   a snapshot of a run date older than the one served: built, checked and kept, but
               not made current (serving moves forward only unless asked)

`snapshot` is the snapshot's path relative to the use case's serving folder
(`snapshots/<run_date>-v<N>.duckdb`), so a state folder copied elsewhere still resolves.

Publish appends its row and then moves current.duckdb, so the log never misses what readers can
see. A process killed between the two leaves a last row that was never served: `served_events`
drops a last row the pointer does not name, and the next publish or rollback deletes it under the
publish lock (`drop_unserved`). So no reader trusts a snapshot that was not served.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from prescore.catalog import PUBLISH_LOG, PUBLISH_LOG_SCHEMA, columns_of
from prescore.platform import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, UseCase

PUBLISH, ROLLBACK, BACKFILL = "publish", "rollback", "backfill"
SERVED = (PUBLISH, ROLLBACK)  # the actions that moved current.duckdb
BUILT = (PUBLISH, BACKFILL)  # the actions that built a snapshot of a run date's predictions
SCHEMA = PUBLISH_LOG_SCHEMA
COLUMNS = columns_of(SCHEMA)


@dataclass(frozen=True)
class Event:
    """One row of publish_log."""

    usecase: str
    run_date: date
    action: str
    predictions_version: int
    model_name: str | None
    model_version: str | None
    snapshot: str
    checks: str | None
    published_at: datetime

    @property
    def snapshot_name(self) -> str:
        """The snapshot's file name; rows written before paths were relative held absolute ones."""
        return PurePosixPath(self.snapshot).name


def relative_snapshot(name: str) -> str:
    """What a row stores for snapshot file `name`: its path under the use case's serving folder."""
    return f"snapshots/{name}"


# ---------------------------------------------------------------- pure: what was served


def served_events(events: Iterable[Event], pointer: str | None) -> list[Event]:
    """The events that made a snapshot current, oldest first.

    `pointer` is where current.duckdb points (None if it does not exist). A last served event
    whose snapshot the pointer does not name never took effect (its process died before moving
    the pointer), so it is left out.
    """
    served = [e for e in sorted(events, key=lambda e: e.published_at) if e.action in SERVED]
    if served and (pointer is None or served[-1].snapshot_name != PurePosixPath(pointer).name):
        served.pop()
    return served


def built(events: Iterable[Event]) -> list[Event]:
    """The events that built a snapshot of a run date's predictions (publishes and backfills, not
    rollbacks), in the order given."""
    return [e for e in events if e.action in BUILT]


def rollback_stack(served: Sequence[Event]) -> list[Event]:
    """What rollback walks back through, the current snapshot last: each publish pushes its
    event, each rollback returns to the snapshot it served again (dropping what came after it).
    So three rollbacks from v4 serve v3, v2, v1, never v4 again."""
    stack: list[Event] = []
    for event in served:
        names = [e.snapshot_name for e in stack]
        if event.action == ROLLBACK and event.snapshot_name in names:
            del stack[len(names) - names[::-1].index(event.snapshot_name) :]
            continue
        stack.append(event)
    return stack


def rollback_target(
    stack: Sequence[Event], built: Sequence[Event], to: date | None
) -> Event | None:
    """The event a rollback serves again: the one below the current on the stack, or with `to`,
    the nearest below it of that run date (else the newest kept build of that date)."""
    below = list(reversed(stack[:-1]))
    if to is None:
        return below[0] if below else None
    current = stack[-1].snapshot_name if stack else None
    candidates = [e for e in below if e.run_date == to]
    candidates += sorted(
        (e for e in built if e.run_date == to and e.snapshot_name != current),
        key=lambda e: e.published_at,
        reverse=True,
    )
    return candidates[0] if candidates else None


def current_at(served: Sequence[Event], instant: datetime) -> Event | None:
    """The served event that was current at `instant` (comparable with published_at), or None."""
    before = [e for e in served if e.published_at <= instant]
    return before[-1] if before else None


# ---------------------------------------------------------------- reads and writes


def _events(rows: Iterable[Sequence[Any]]) -> list[Event]:
    return sorted((Event(*row) for row in rows), key=lambda e: e.published_at)


def read(spark: SparkSession, settings: Settings, usecase: UseCase) -> list[Event]:
    """Every event of a use case, oldest first (none before the first publish)."""
    from pyspark.sql import functions as F

    if not tables.exists(settings, PUBLISH_LOG):
        return []
    rows = (
        tables.read(spark, settings, PUBLISH_LOG)
        .where(F.col("usecase") == usecase.name)
        .select(*COLUMNS)
        .collect()
    )
    return _events(rows)


def read_with_duckdb(settings: Settings, usecase: UseCase) -> list[Event]:
    """read() without Spark, for readers that must not start a JVM (lookups)."""
    if not tables.exists(settings, PUBLISH_LOG):
        return []
    rows = tables.read_with_duckdb(
        settings, PUBLISH_LOG, COLUMNS, where="usecase = ?", params=[usecase.name]
    )
    return _events(rows)


def event_frame(spark: SparkSession, event: Event) -> DataFrame:
    """One event as a frame of the log's schema (spelled out so a null never changes a type)."""
    return spark.createDataFrame([event.__dict__], schema=SCHEMA)


def append(spark: SparkSession, settings: Settings, event: Event) -> None:
    tables.append(event_frame(spark, event), settings, PUBLISH_LOG)


def drop_unserved(
    spark: SparkSession, settings: Settings, usecase: UseCase, pointer: str | None
) -> Event | None:
    """Delete the last served event if the pointer does not name it (a publish or rollback died
    between logging and moving the pointer); returns it. Call under the publish lock."""
    from pyspark.sql import functions as F

    events = read(spark, settings, usecase)
    served = [e for e in events if e.action in SERVED]
    kept = served_events(events, pointer)
    if len(kept) == len(served):
        return None
    orphan = served[-1]
    tables.delete_where(
        spark,
        settings,
        PUBLISH_LOG,
        (F.col("usecase") == usecase.name)
        & (F.col("action") == orphan.action)
        & (F.col("published_at") == F.lit(orphan.published_at)),
    )
    return orphan


def delete_usecase_rows(spark: SparkSession, settings: Settings, usecase: UseCase) -> None:
    """Delete every event of one use case in one commit (`prescore reset`); other use cases'
    events stay. Call under the publish lock."""
    from pyspark.sql import functions as F

    tables.delete_where(spark, settings, PUBLISH_LOG, F.col("usecase") == usecase.name)
