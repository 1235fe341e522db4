"""Drift and realized-performance metrics: pure functions on histograms, and their Spark passes.

Feature drift compares a reference sample (the champion's training rows) with the current batch:

- PSI per feature, on the reference's deciles for a numeric feature (ties merge bins) and on the
  declared levels for a categorical one; missing values are a bin of their own, so a rise in
  nulls is drift too. An empty bin counts as `PSI_EPSILON`.
- KS per numeric feature: the largest gap between the two empirical CDFs, evaluated at the
  reference's percentiles (`ks_bins - 1` cut points from `approxQuantile`). Between two cut points
  the reference CDF moves by one bin's share, so the binned value is below the exact two-sample
  statistic by at most 1/ks_bins (plus the quantiles' relative error), never above it. Missing
  values are left out of KS.

Every histogram comes from one Spark aggregate over both frames; only the counts reach the driver.
Realized performance (AUC, RMSE, MAE, MAPE) is computed in Spark over every joined row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prescore.catalog import SCORE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

PSI_EPSILON = 1e-4  # the share an empty bin counts as, so one empty bin does not make PSI infinite
MISSING_BIN = -1  # the bin of null and NaN values
QUANTILE_ERROR = 0.001  # approxQuantile's relative error


def population_stability_index(
    reference: Sequence[int], candidate: Sequence[int], *, epsilon: float = PSI_EPSILON
) -> float:
    """PSI of two histograms over the same bins: the sum of (c - r) * ln(c / r) over bin shares."""
    ref_total, cand_total = sum(reference), sum(candidate)
    psi = 0.0
    for ref_rows, cand_rows in zip(reference, candidate, strict=True):
        ref_share = max(ref_rows / ref_total, epsilon)
        cand_share = max(cand_rows / cand_total, epsilon)
        psi += (cand_share - ref_share) * math.log(cand_share / ref_share)
    return psi


def ks_statistic(reference: Sequence[int], candidate: Sequence[int]) -> float:
    """Largest gap between the cumulative shares of two histograms over the same ordered bins."""
    ref_total, cand_total = sum(reference), sum(candidate)
    if not ref_total or not cand_total:
        return math.nan
    ref_cdf = itertools.accumulate(r / ref_total for r in reference)
    cand_cdf = itertools.accumulate(c / cand_total for c in candidate)
    return max(abs(c - r) for r, c in zip(ref_cdf, cand_cdf, strict=True))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    ks: float | None  # numeric features only
    reference_rows: int
    current_rows: int
    unseen: int | None = None  # categorical: current values outside the model's levels


def quantile_edges(
    frame: DataFrame, columns: list[str], bins: Sequence[int]
) -> dict[int, dict[str, list[float]]]:
    """For each bin count n, inner bin edges per column: the frame's 1/n, 2/n, ... quantiles
    (ties merged), all from one approxQuantile pass."""
    if not columns:
        return {n: {} for n in bins}
    cuts = {n: [i / n for i in range(1, n)] for n in bins}
    every = sorted({c for n in bins for c in cuts[n]})
    found = frame.approxQuantile(columns, every, QUANTILE_ERROR)
    # A column with no value (all null) has no quantiles: one bin, besides the missing one.
    at = {c: dict(zip(every, q, strict=False)) for c, q in zip(columns, found, strict=True)}
    return {
        n: {c: sorted({at[c][q] for q in cuts[n] if q in at[c]}) for c in columns} for n in bins
    }


def bucketed(
    frames: tuple[DataFrame, ...], edges: dict[str, tuple[str, list[float]]]
) -> tuple[tuple[DataFrame, ...], dict[str, Column]]:
    """The frames with a bin column per binning of `edges` (name -> (column, inner edges)), and
    each binning's bin: how many edges are <= the value, found by Spark ML's Bucketizer (a binary
    search, compiled); null and NaN: MISSING_BIN. An infinite edge is left out (the splits must
    rise strictly from -inf to +inf): infinite values then share the outermost bins."""
    from pyspark.ml.feature import Bucketizer
    from pyspark.sql import functions as F

    if not edges:
        return frames, {}
    inf = float("inf")
    names = list(edges)
    outputs = [f"_bin_{i}" for i in range(len(names))]
    bucketizer = Bucketizer(
        splitsArray=[[-inf, *[e for e in edges[n][1] if math.isfinite(e)], inf] for n in names],
        inputCols=[edges[n][0] for n in names],
        outputCols=outputs,
        handleInvalid="keep",  # NaN gets a bucket of its own, replaced by MISSING_BIN below
    )
    bins = {}
    for name, output in zip(names, outputs, strict=True):
        value = F.col(edges[name][0]).cast("double")
        missing = value.isNull() | F.isnan(value)
        bins[name] = F.when(missing, MISSING_BIN).otherwise(F.col(output).cast("int"))
    return tuple(bucketizer.transform(f) for f in frames), bins


def _level_of(column: str, levels: list[str]) -> Column:
    """The bin of a categorical value: its level's index; missing or unseen is MISSING_BIN."""
    from pyspark.sql import functions as F

    position = F.array_position(F.array(*[F.lit(v) for v in levels]), F.col(column))
    return F.when(F.coalesce(position, F.lit(0)) > 0, position - 1).otherwise(MISSING_BIN)


def _is_unseen(column: str, levels: list[str]) -> Column:
    """1 for a value present but outside the levels (the model codes it as missing), else 0."""
    from pyspark.sql import functions as F

    outside = F.col(column).isNotNull() & ~F.col(column).isin(*levels)
    return F.when(outside, 1).otherwise(0)


def histograms(
    reference: DataFrame, current: DataFrame, binnings: dict[str, Column], *, bins: int
) -> dict[tuple[str, bool], dict[int, int]]:
    """Rows per (binning, is_current) and bin, for every binning at once, in one Spark aggregate.

    `binnings` maps a name to a Column giving each row's bin, from MISSING_BIN to below `bins`.
    Each row gives one whole number per binning, coding the side, the binning and the bin, and
    the numbers are counted: a whole number is hashed and compared far faster than a (name, bin)
    pair (as the profile's histogram bins, bench/README.md)."""
    from pyspark.sql import functions as F

    names = list(binnings)
    stride = bins - MISSING_BIN  # codes per binning: MISSING_BIN up to bins - 1
    side = len(names) * stride  # the current rows' codes come after every reference code

    def coded(frame: DataFrame, is_current: bool) -> DataFrame:
        offset = side * is_current - MISSING_BIN
        codes = [(b + (offset + i * stride)).cast("int") for i, b in enumerate(binnings.values())]
        return frame.select(F.explode(F.array(*codes)).alias("code"))

    both = coded(reference, False).unionByName(coded(current, True))
    found: dict[tuple[str, bool], dict[int, int]] = {}
    for row in both.groupBy("code").count().collect():
        is_current, within = divmod(row["code"], side)
        binning, bin_ = divmod(within, stride)
        found.setdefault((names[binning], bool(is_current)), {})[bin_ + MISSING_BIN] = row["count"]
    return found


def _aligned(
    counts: dict[tuple[str, bool], dict[int, int]], name: str, bins: Sequence[int]
) -> tuple[list[int], list[int]]:
    ref, cur = counts.get((name, False), {}), counts.get((name, True), {})
    return [ref.get(b, 0) for b in bins], [cur.get(b, 0) for b in bins]


def feature_drift(
    reference: DataFrame,
    current: DataFrame,
    *,
    numeric: list[str],
    categorical: dict[str, list[str]],
    psi_bins: int,
    ks_bins: int,
) -> list[FeatureDrift]:
    """PSI (and KS for numeric features) of every feature, reference against current."""
    edges = quantile_edges(reference, numeric, (psi_bins, ks_bins))
    coarse, fine = edges[psi_bins], edges[ks_bins]
    numeric_edges = {f"psi:{c}": (c, coarse[c]) for c in numeric}
    numeric_edges |= {f"ks:{c}": (c, fine[c]) for c in numeric}
    (reference, current), binnings = bucketed((reference, current), numeric_edges)
    for column, levels in categorical.items():
        binnings[f"psi:{column}"] = _level_of(column, levels)
        binnings[f"unseen:{column}"] = _is_unseen(column, levels)
    # n quantile bins have n - 1 inner edges at most; unseen is 0 or 1.
    most = max(psi_bins, ks_bins, 2, *(len(levels) for levels in categorical.values()))
    counts = histograms(reference, current, binnings, bins=most)
    results = []
    for column in numeric:
        ref, cur = _aligned(counts, f"psi:{column}", [MISSING_BIN, *range(len(coarse[column]) + 1)])
        ref_ks, cur_ks = _aligned(counts, f"ks:{column}", range(len(fine[column]) + 1))
        results.append(
            FeatureDrift(
                column,
                "numeric",
                population_stability_index(ref, cur),
                ks_statistic(ref_ks, cur_ks),
                sum(ref),
                sum(cur),
            )
        )
    for column, levels in categorical.items():
        ref, cur = _aligned(counts, f"psi:{column}", [MISSING_BIN, *range(len(levels))])
        _, unseen = _aligned(counts, f"unseen:{column}", [1])
        results.append(
            FeatureDrift(
                column,
                "categorical",
                population_stability_index(ref, cur),
                None,
                sum(ref),
                sum(cur),
                unseen[0],
            )
        )
    return results


# ---------------------------------------------------------------- realized performance


def score_bin_counts(
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


def regression_outcomes(joined: DataFrame, *, label: str, score: str) -> dict[str, float]:
    """RMSE, MAE and MAPE over every row, in one Spark aggregate. MAPE is a fraction, a label of 0
    dividing by float64's epsilon, as sklearn's (and evaluation.regression_metrics) does."""
    from pyspark.sql import functions as F

    y, p = F.col(label).cast("double"), F.col(score).cast("double")
    eps = float.fromhex("0x1.0p-52")  # numpy.finfo(float64).eps
    row = joined.agg(
        F.sqrt(F.avg((y - p) * (y - p))).alias("rmse"),
        F.avg(F.abs(y - p)).alias("mae"),
        F.avg(F.abs(y - p) / F.greatest(F.abs(y), F.lit(eps))).alias("mape"),
    ).first()
    assert row is not None  # an ungrouped aggregate has one row
    return {k: float(v) for k, v in row.asDict().items() if v is not None}


def binary_outcomes(joined: DataFrame, *, label: str, score: str) -> dict[str, float]:
    """AUC over every row with Spark ML's evaluator (it sorts the scores into at most 1000 bins,
    so on very large data the curve is that coarse); {} when only one class is present."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    frame = joined.select(
        F.col(label).cast("double").alias("label"), F.col(score).cast("double").alias("score")
    )
    classes = frame.agg(F.count_distinct("label")).first()
    if classes is None or classes[0] < 2:
        return {}
    evaluator = BinaryClassificationEvaluator(
        rawPredictionCol="score", labelCol="label", metricName="areaUnderROC"
    )
    return {"auc": float(evaluator.evaluate(frame))}
