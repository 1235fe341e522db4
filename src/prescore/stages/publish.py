"""Publish: checks on the candidate predictions -> serving snapshot -> publish_log -> current pointer.

Nothing becomes visible unless every check passed. The publish log (Delta, one row per publish or
rollback) says which predictions version, model and snapshot each publish made current.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from prescore import serving, tables
from prescore.stages.score import SCORE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from prescore.config import Settings, UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)
PUBLISH_LOG = serving.PUBLISH_LOG


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


class PublishCheckError(RuntimeError):
    """A candidate failed a publish check; nothing was published."""


def candidate_checks(df: DataFrame, *, usecase: UseCase, expected_rows: int) -> list[CheckResult]:
    """Row count, null and duplicate keys, NaN and out-of-range scores, in one aggregate pass."""
    from pyspark.sql import functions as F

    key = F.struct(*usecase.keys)
    finite = F.when(~F.isnan(SCORE), F.col(SCORE))  # Spark orders NaN above every number
    null_key = F.lit(0)
    for k in usecase.keys:
        null_key = F.when(F.col(k).isNull(), 1).otherwise(null_key)
    result = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_distinct(key).alias("distinct_keys"),
        F.sum(null_key).alias("null_keys"),
        F.count(F.when(F.isnan(SCORE) | F.col(SCORE).isNull(), 1)).alias("bad_scores"),
        F.min(finite).alias("min_score"),
        F.max(finite).alias("max_score"),
    ).first()
    assert result is not None  # an ungrouped aggregate has exactly one row
    stats = result.asDict()
    rows, low, high = stats["rows"], stats["min_score"], stats["max_score"]
    in_range = usecase.task != "binary" or (rows > 0 and low >= 0.0 and high <= 1.0)
    return [
        CheckResult(
            "row_count",
            rows == expected_rows and rows > 0,
            f"{rows} rows, scored population {expected_rows}",
        ),
        CheckResult("no_null_keys", not stats["null_keys"], f"{stats['null_keys'] or 0} null keys"),
        CheckResult(
            "unique_keys",
            stats["distinct_keys"] == rows,
            f"{rows - stats['distinct_keys']} duplicate keys",
        ),
        CheckResult(
            "no_nan_scores", stats["bad_scores"] == 0, f"{stats['bad_scores']} NaN or null scores"
        ),
        CheckResult("scores_in_range", in_range, f"scores in [{low}, {high}]"),
    ]


def data_files(df: DataFrame) -> list[str]:
    """The local Parquet files behind exactly this Delta version and run_date."""
    paths = df.select("_metadata.file_path").distinct().collect()
    return sorted(unquote(urlparse(row[0]).path) for row in paths)


def publish_log_row(spark: SparkSession, **values: object) -> DataFrame:
    """One publish_log row, stamped now; the schema is spelled out so a null never changes a type."""
    schema = (
        "usecase string, run_date date, action string, predictions_version bigint, model_name string, "
        "model_version string, snapshot string, checks string, published_at timestamp"
    )
    row = {**values, "published_at": datetime.now()}
    return spark.createDataFrame([row], schema=schema)


@dataclass(frozen=True)
class Candidate:
    """The latest predictions version of a run date, with its lineage and its passed checks."""

    frame: DataFrame
    version: int
    lineage: Row
    population: int
    checks: list[CheckResult]


def checked_candidate(ctx: RunContext) -> Candidate:
    """The run date's candidate predictions, or PublishCheckError naming every failed check."""
    usecase, settings = ctx.usecase, ctx.settings
    version = tables.latest_version(ctx.spark, settings, usecase.predictions_table)
    candidate = tables.read_run(
        ctx.spark, settings, usecase.predictions_table, ctx.run_date, version
    )
    lineage = candidate.select("features_version", "model_name", "model_version").first()
    assert lineage is not None  # read_run refuses an empty run date
    clean = tables.read_run(
        ctx.spark, settings, usecase.clean_table, ctx.run_date, lineage["features_version"]
    )
    population = clean.count()
    checks = candidate_checks(candidate, usecase=usecase, expected_rows=population)
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise PublishCheckError(f"{usecase.predictions_table} v{version} not published: {reasons}")
    return Candidate(candidate, version, lineage, population, checks)


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    candidate = checked_candidate(ctx)
    version, lineage = candidate.version, candidate.lineage
    snapshot = serving.snapshot_path(settings, usecase, ctx.run_date, version)
    rows = serving.build_snapshot(
        snapshot,
        parquet_files=data_files(candidate.frame),
        run_date=ctx.run_date,
        keys=usecase.keys,
        views=serving.load_views(settings.sql_dir),
    )
    if rows != candidate.population:
        raise PublishCheckError(
            f"{snapshot}: holds {rows} rows, expected {candidate.population}; not published"
        )
    entry = publish_log_row(
        ctx.spark,
        usecase=usecase.name,
        run_date=ctx.run_date,
        action="publish",
        predictions_version=version,
        model_name=lineage["model_name"],
        model_version=lineage["model_version"],
        snapshot=str(snapshot),
        checks=json.dumps([asdict(c) for c in candidate.checks]),
    )
    make_current(entry, settings, usecase, snapshot)
    serving.prune_snapshots(settings, usecase, keep={snapshot.resolve()})
    log.info("publish: %s v%d (%d rows) -> %s", usecase.predictions_table, version, rows, snapshot)
    return {"predictions_version": version, "rows": rows, "snapshot": str(snapshot)}


def make_current(entry: DataFrame, settings: Settings, usecase: UseCase, snapshot: Path) -> None:
    """Stage the link, log, then move the link: the log never misses what readers can see, and
    a link that cannot be written (disk full, no rights) fails before anything is logged."""
    staged = serving.stage_pointer(settings, usecase, snapshot)
    try:
        tables.append(entry, settings, PUBLISH_LOG)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    serving.move_pointer(staged)


def rollback(
    spark: SparkSession, settings: Settings, usecase: UseCase, to: date | None = None
) -> dict[str, object]:
    """Point current.duckdb back at an earlier publish (the previous one, or run date `to`)."""
    from pyspark.sql import functions as F

    history = (
        tables.read(spark, settings, PUBLISH_LOG)
        .where(F.col("usecase") == usecase.name)
        .orderBy(F.col("published_at").desc())
        .collect()
    )
    if not history:
        raise LookupError(f"{PUBLISH_LOG}: nothing published for use case {usecase.name!r}")
    current = history[0]
    earlier = [r for r in history if r.action == "publish" and r.snapshot != current.snapshot]
    if to is not None:
        earlier = [r for r in earlier if r.run_date == to]
    target = next((r for r in earlier if Path(r.snapshot).exists()), None)
    if target is None:
        wanted = f"run date {to}" if to else "an earlier publish"
        raise LookupError(
            f"{PUBLISH_LOG}: no kept snapshot of {wanted} for {usecase.name!r} "
            f"(the last {settings.serving_snapshots_kept} are kept); republish that date instead"
        )
    entry = publish_log_row(spark, **{**target.asDict(), "action": "rollback"})
    make_current(entry, settings, usecase, Path(target.snapshot))
    log.info("rollback: %s -> %s (run date %s)", usecase.name, target.snapshot, target.run_date)
    return {
        "run_date": target.run_date,
        "snapshot": target.snapshot,
        "model_version": target.model_version,
    }
