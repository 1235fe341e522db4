"""The checks a candidate's predictions pass before publish: counts, keys, scores, drift.

Pure decisions over frames: each check is a CheckResult (name, passed, detail); the publish stage
refuses the candidate, naming every failed check, unless all passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prescore.catalog import SCORE
from prescore.monitoring.metrics import population_stability_index, score_bin_counts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.config import PublishSettings, UseCase


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
    ref_counts, cand_counts = score_bin_counts(reference, candidate, edges=edges)
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


def require_passed(checks: list[CheckResult], *, candidate: str) -> None:
    """PublishCheckError naming every failed check of `candidate`, unless all passed."""
    failed = [c for c in checks if not c.passed]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise PublishCheckError(f"{candidate} not published: {reasons}")
