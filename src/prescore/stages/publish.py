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
from prescore.monitoring import population_stability_index
from prescore.stages.score import SCORE, scored_population

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from prescore.config import PublishSettings, Settings, UseCase
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

    key = F.struct(*usecase.published_keys)
    finite = F.when(~F.isnan(SCORE), F.col(SCORE))  # Spark orders NaN above every number
    null_key = F.lit(0)
    for k in usecase.published_keys:
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


def score_bin_edges(reference: DataFrame, *, task: str, bins: int) -> list[float]:
    """Inner bin edges: equal bins over [0, 1] for probabilities, else the reference's quantiles."""
    cuts = [i / bins for i in range(1, bins)]
    if task == "binary":
        return cuts
    return sorted(set(reference.approxQuantile(SCORE, cuts, 0.001)))  # ties merge their bins


def score_histograms(
    reference: DataFrame, candidate: DataFrame, *, edges: list[float]
) -> tuple[list[int], list[int]]:
    """Rows per score bin of each frame, in one Spark aggregate; bin i is [edges[i-1], edges[i])."""
    from pyspark.sql import functions as F

    bin_of = sum((F.when(F.col(SCORE) >= e, 1).otherwise(0) for e in edges), F.lit(0))
    both = reference.select(F.lit(False).alias("is_candidate"), bin_of.alias("bin")).unionByName(
        candidate.select(F.lit(True).alias("is_candidate"), bin_of.alias("bin"))
    )
    counts = {
        (r.is_candidate, r.bin): r["count"]
        for r in both.groupBy("is_candidate", "bin").count().collect()
    }
    bins = range(len(edges) + 1)
    return [counts.get((False, b), 0) for b in bins], [counts.get((True, b), 0) for b in bins]


def drift_check(
    candidate: DataFrame,
    reference: DataFrame | None,
    *,
    reference_name: str,
    task: str,
    limits: PublishSettings,
) -> CheckResult:
    """The candidate's score distribution against the published one: PSI at most limits.max_psi."""
    if reference is None:
        return CheckResult(
            "score_drift", True, "no published version to compare with: first publish"
        )
    edges = score_bin_edges(reference, task=task, bins=limits.psi_bins)
    ref_counts, cand_counts = score_histograms(reference, candidate, edges=edges)
    rows = min(sum(ref_counts), sum(cand_counts))
    if rows < limits.psi_min_rows:
        return CheckResult(
            "score_drift",
            True,
            f"not measured: {rows} rows < psi_min_rows {limits.psi_min_rows} vs {reference_name}",
        )
    psi = population_stability_index(ref_counts, cand_counts)
    return CheckResult(
        "score_drift",
        psi <= limits.max_psi,
        f"PSI {psi:.4f} vs {reference_name} (max_psi {limits.max_psi})",
    )


def published_reference(ctx: RunContext) -> tuple[DataFrame, str] | None:
    """The predictions readers are served now (the latest publish or rollback), or None."""
    from pyspark.sql import functions as F

    usecase, settings = ctx.usecase, ctx.settings
    if not tables.exists(settings, PUBLISH_LOG):
        return None
    current = (
        tables.read(ctx.spark, settings, PUBLISH_LOG)
        .where(F.col("usecase") == usecase.name)
        .orderBy(F.col("published_at").desc())
        .first()
    )
    if current is None:
        return None
    version = current.predictions_version
    frame = tables.read_run(
        ctx.spark, settings, usecase.predictions_table, current.run_date, version
    )
    return frame, f"published {usecase.predictions_table} v{version} of {current.run_date}"


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
    population = scored_population(
        ctx.spark, settings, usecase, ctx.run_date, lineage["features_version"]
    )
    checks = candidate_checks(candidate, usecase=usecase, expected_rows=population)
    reference = published_reference(ctx)
    checks.append(
        drift_check(
            candidate,
            reference[0] if reference else None,
            reference_name=reference[1] if reference else "",
            task=usecase.task,
            limits=usecase.publish,
        )
    )
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise PublishCheckError(f"{usecase.predictions_table} v{version} not published: {reasons}")
    return Candidate(candidate, version, lineage, population, checks)


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    candidate = checked_candidate(ctx)
    version, lineage = candidate.version, candidate.lineage
    snapshot, rows = serving.build_usecase_snapshot(
        settings, usecase, ctx.run_date, version, data_files(candidate.frame)
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
