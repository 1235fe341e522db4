"""Publish: checks on the candidate predictions -> serving snapshot -> publish_log -> current pointer.

Nothing becomes visible unless every check passed (scoring.checks). The publish log
(serving.publish_log) says which
predictions version, model and snapshot each publish made current. Serving moves forward only: a
run date older than the one served (a backfill) is checked, built and logged, but not made current
unless asked (`serve_older`). Rollback walks back one served snapshot per call. One publish or
rollback of a use case runs at a time (snapshot.publish_lock).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from prescore.catalog import PUBLISH_LOG
from prescore.platform import tables
from prescore.scoring.checks import (
    CheckResult,
    PublishCheckError,
    candidate_checks,
    drift_check,
    require_passed,
)
from prescore.scoring.population import scored_population
from prescore.serving import publish_log, snapshot, store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from prescore.config import Settings, UseCase
    from prescore.context import RunContext
    from prescore.serving.publish_log import Event

__all__ = ["PublishCheckError", "rollback", "run"]
log = logging.getLogger(__name__)


def published_reference(ctx: RunContext, served: Event | None) -> tuple[DataFrame, str] | None:
    """The predictions readers are served now, or None before the first publish."""
    if served is None:
        return None
    table, version = ctx.usecase.predictions_table, served.predictions_version
    frame = tables.read_run(ctx.spark, ctx.settings, table, served.run_date, version)
    return frame, f"published {table} v{version} of {served.run_date}"


def data_files(df: DataFrame) -> list[str]:
    """The Parquet files behind exactly this Delta version and run_date: local paths, or URIs
    when the state is on an object store."""
    paths = df.select("_metadata.file_path").distinct().collect()
    uris = [urlparse(row[0]) for row in paths]
    return sorted(unquote(u.path if u.scheme == "file" else u.geturl()) for u in uris)


@dataclass(frozen=True)
class Candidate:
    """The latest predictions version of a run date, with its lineage and its passed checks."""

    frame: DataFrame
    version: int
    lineage: Row
    population: int
    checks: list[CheckResult]


def checked_candidate(ctx: RunContext, served: Event | None) -> Candidate:
    """The run date's candidate predictions, or PublishCheckError naming every failed check;
    `served` is what readers get now, the drift check's reference."""
    usecase, settings = ctx.usecase, ctx.settings
    version = tables.latest_version(settings, usecase.predictions_table)
    candidate = tables.read_run(
        ctx.spark, settings, usecase.predictions_table, ctx.run_date, version
    )
    lineage = candidate.select("features_version", "model_name", "model_version").first()
    assert lineage is not None  # read_run refuses an empty run date
    population = scored_population(
        ctx.spark, settings, usecase, ctx.run_date, lineage["features_version"]
    )
    checks = candidate_checks(candidate, usecase=usecase, expected_rows=population)
    reference = published_reference(ctx, served)
    checks.append(
        drift_check(
            candidate,
            reference[0] if reference else None,
            reference_name=reference[1] if reference else "",
            task=usecase.task,
            limits=usecase.publish,
        )
    )
    require_passed(checks, candidate=f"{usecase.predictions_table} v{version}")
    return Candidate(candidate, version, lineage, population, checks)


def run(ctx: RunContext, *, serve_older: bool = False) -> dict[str, object]:
    """Check, build and log the run date's predictions, and serve them unless they are older than
    what is served (then they are a backfill, unless `serve_older`)."""
    usecase, settings, spark = ctx.usecase, ctx.settings, ctx.spark
    with snapshot.publish_lock(settings, usecase, f"publish of {ctx.run_date}"):
        served = current_events(spark, settings, usecase)
        current = served[-1] if served else None
        candidate = checked_candidate(ctx, current)
        built, rows = snapshot.build_usecase_snapshot(
            settings, usecase, ctx.run_date, candidate.version, data_files(candidate.frame)
        )
        if rows != candidate.population:
            raise PublishCheckError(
                f"{built}: holds {rows} rows, expected {candidate.population}; not published"
            )
        moves = current is None or serve_older or ctx.run_date >= current.run_date
        event = publish_log.Event(
            usecase=usecase.name,
            run_date=ctx.run_date,
            action=publish_log.PUBLISH if moves else publish_log.BACKFILL,
            predictions_version=candidate.version,
            model_name=candidate.lineage["model_name"],
            model_version=candidate.lineage["model_version"],
            snapshot=publish_log.relative_snapshot(built.name),
            checks=json.dumps([asdict(c) for c in candidate.checks]),
            published_at=datetime.now(),
        )
        if moves:
            make_current(spark, settings, usecase, event)
            served.append(event)
        else:
            publish_log.append(spark, settings, event)
        prune(settings, usecase, served, also=built.name)
    summary: dict[str, object] = {
        "predictions_version": candidate.version,
        "rows": rows,
        "snapshot": event.snapshot,
        "served": moves,
    }
    if not moves:
        assert current is not None  # only an older date than a served one is held back
        summary["not_served_because"] = (
            f"run date {ctx.run_date} is older than the served {current.run_date}: published as "
            "a backfill; `prescore publish --serve-older` serves it"
        )
        log.warning("publish: %s %s", usecase.name, summary["not_served_because"])
    log.info(
        "publish: %s v%d (%d rows) -> %s",
        usecase.predictions_table,
        candidate.version,
        rows,
        built.name,
    )
    return summary


def current_events(spark: SparkSession, settings: Settings, usecase: UseCase) -> list[Event]:
    """The served events, oldest first, after deleting a last one that never took effect (a
    process killed between logging and moving the pointer). Call under the publish lock."""
    pointer = snapshot.pointer_target(settings, usecase)
    orphan = publish_log.drop_unserved(spark, settings, usecase, pointer)
    if orphan is not None:
        log.warning(
            "%s: deleted the %s of %s (%s) from %s: it was logged but never served",
            usecase.name,
            orphan.action,
            orphan.run_date,
            orphan.snapshot_name,
            PUBLISH_LOG,
        )
    return publish_log.served_events(publish_log.read(spark, settings, usecase), pointer)


def prune(settings: Settings, usecase: UseCase, served: list[Event], *, also: str) -> None:
    """Keep the snapshots the last `serving_snapshots_kept` rollbacks can reach and the last ones
    served (for as_of), and `also`; delete the rest."""
    kept = settings.serving_snapshots_kept
    stack = publish_log.rollback_stack(served)
    recent = list(dict.fromkeys(e.snapshot_name for e in reversed(served)))
    keep = {e.snapshot_name for e in stack[-kept:]} | set(recent[:kept]) | {also}
    snapshot.prune_snapshots(settings, usecase, keep)


def make_current(spark: SparkSession, settings: Settings, usecase: UseCase, event: Event) -> None:
    """Stage the link, log, then move the link: the log never misses what readers can see, and
    a link that cannot be written (disk full, no rights) fails before anything is logged."""
    staged = snapshot.stage_pointer(settings, usecase, event.snapshot_name)
    try:
        publish_log.append(spark, settings, event)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    snapshot.move_pointer(staged)
    if settings.state_on_object_store:  # last: the store's readers follow this pointer
        store.write_pointer(settings, usecase, event.snapshot_name, run_date=str(event.run_date))


def rollback(
    spark: SparkSession, settings: Settings, usecase: UseCase, to: date | None = None
) -> dict[str, object]:
    """Serve again the snapshot served before the current one (or the nearest earlier one of run
    date `to`): each call walks one step further back."""
    with snapshot.publish_lock(settings, usecase, "rollback"):
        served = current_events(spark, settings, usecase)
        if not served:
            raise LookupError(f"{PUBLISH_LOG}: nothing served for use case {usecase.name!r}")
        stack = publish_log.rollback_stack(served)
        built = publish_log.built(publish_log.read(spark, settings, usecase))
        target = publish_log.rollback_target(stack, built, to)
        wanted = f"run date {to}" if to else "earlier served snapshot"
        if target is None:
            raise LookupError(
                f"{PUBLISH_LOG}: {usecase.name!r} has no {wanted} to roll back to "
                f"(serving {stack[-1].snapshot_name})"
            )
        path = snapshot.kept_snapshot(settings, usecase, target.snapshot_name)
        if path is None:
            raise LookupError(
                f"{usecase.name!r}: {wanted} ({target.snapshot_name}) is no longer kept (the last "
                f"{settings.serving_snapshots_kept} are); republish run date {target.run_date} instead"
            )
        problem = snapshot.snapshot_problem(path)
        if problem is not None:
            raise LookupError(
                f"{usecase.name!r}: {wanted} ({target.snapshot_name}) cannot be served: {problem}; "
                f"republish run date {target.run_date} instead"
            )
        event = replace(
            target,
            action=publish_log.ROLLBACK,
            snapshot=publish_log.relative_snapshot(target.snapshot_name),
            published_at=datetime.now(),
        )
        make_current(spark, settings, usecase, event)
    log.info(
        "rollback: %s -> %s (run date %s)", usecase.name, target.snapshot_name, target.run_date
    )
    return {
        "run_date": target.run_date,
        "snapshot": event.snapshot,
        "model_version": target.model_version,
    }
