"""Profile of one batch: per-column statistics computed in Spark over a cached frame.

Pass 1 is a handful of aggregations, each of a kind Spark runs well. Over every row: the
arithmetic that Spark compiles (row count, nulls, min, max, mean, stddev); the sketches it cannot
(distinct counts, text min and max); and the count of each combination of categorical values in
one grouping by all of them at once, which gives those columns' top values, distinct counts and
text min and max exactly, so the sketches leave them out (unless their combinations are too many
to group jointly: then each column keeps its top values from a stacked count, and the sketches
take them back). Over a stable sample of the rows when they are many: the approximate quantiles,
and the Pearson correlation of every pair of numeric columns (features and label), both
estimates whose sampling error at SAMPLE_ROWS rows is below what a profile reads. Pass 2 counts
the histogram bins of numeric columns (edges from pass 1's min and max) in one grouped count of
integer codes. The result is one row per column and run_date, as catalog.PROFILE_SCHEMA.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from prescore import catalog
from prescore.platform.spark import temporary_conf

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from prescore.config import UseCase

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
QUANTILE_ACCURACY = 1_000  # percentile_approx: relative error about 1/accuracy
# Rows fed to the quantiles and correlations, about: beyond this they come from a seeded-hash
# sample of the rows. Its quantiles' rank error (standard deviation sqrt(q(1 - q) / n): at most
# 0.0011, at the median) is of the sketch's own 1/accuracy scale, and a correlation's standard
# error, (1 - r^2) / sqrt(n), is at most 0.0022. Smaller frames feed every row.
SAMPLE_ROWS = 200_000
SAMPLE_SEED = "prescore-profile-sample"  # hashed with the keys: the same rows on every run
DISTINCT_RSD = 0.05  # approx_count_distinct: relative standard deviation
HISTOGRAM_BINS = 20
TOP_VALUES = 10
JOINT_GROUPS_LIMIT = 100_000  # categorical value combinations grouped at once, at most
NUMERIC_TYPES = ("int", "long", "double")


@dataclass(frozen=True)
class ProfilePlan:
    """Which statistics each column gets, from the use case: PII columns get counts only."""

    dtypes: dict[str, str]  # column -> declared type, in source order
    roles: dict[str, str]  # column -> key, event_time, label, feature, pii, other
    histogram: list[str]  # numeric columns binned
    top_values: list[str]  # categorical columns counted by value
    correlated: list[str]  # numeric features and the label

    @classmethod
    def for_usecase(cls, usecase: UseCase, columns: list[str]) -> ProfilePlan:
        """The plan for the declared columns present in `columns` (lineage columns are left out)."""
        dtypes = {c: t for c, t in usecase.source.schema_.items() if c in columns}
        roles = {c: _role(usecase, c) for c in dtypes}
        numeric = [
            c
            for c, t in dtypes.items()
            if t in NUMERIC_TYPES and roles[c] in ("feature", "label", "other")
        ]
        label = [usecase.label] if usecase.label in numeric else []
        categorical = [c for c in usecase.categorical_features if c in dtypes]
        return cls(
            dtypes=dtypes,
            roles=roles,
            histogram=numeric,
            top_values=categorical + [c for c in label if c not in categorical],
            correlated=[c for c in usecase.numeric_features if c in numeric] + label,
        )


def _role(usecase: UseCase, column: str) -> str:
    if column in usecase.keys:
        return "key"
    if column in usecase.pii:
        return "pii"
    if column == usecase.label:
        return "label"
    if column == usecase.event_time:
        return "event_time"
    return "feature" if column in usecase.features else "other"


@dataclass(frozen=True)
class ColumnProfile:
    """One column's statistics; the JSON fields are strings so the Delta table stays flat."""

    column: str
    dtype: str
    role: str
    rows: int
    nulls: int
    null_rate: float
    distinct_approx: int
    min: str | None
    max: str | None
    mean: float | None
    stddev: float | None
    quantiles: str | None  # JSON {"0.05": v, ...}
    histogram: str | None  # JSON {"edges": [...], "counts": [...]}
    top_values: str | None  # JSON [[value, count], ...], most frequent first
    correlations: str | None  # JSON {other column: pearson r}

    def loaded(self, name: str) -> Any:
        value = getattr(self, name)
        return None if value is None else json.loads(value)


# ---------------------------------------------------------------- pass 1: one aggregation


def _pair(a: str, b: str) -> str:
    return f"corr__{a}__{b}"


def summary_aggregates(
    plan: ProfilePlan, counted: Collection[str] = ()
) -> tuple[list[Column], list[Column], list[Column]]:
    """Every pass-1 statistic as an aggregate expression named `<stat>__<column>`, in three lists,
    one aggregation each: the arithmetic ones over every row (counts, min, max, moments), which
    Spark compiles into one tight loop; the sketches over every row (distinct counts, with the min
    and max of text columns), which it can only interpret (an aggregation holding any of these is
    interpreted whole), left out for the `counted` columns, whose value counts give them exactly;
    and over the sample rows, the quantiles (a sketch) with the correlations (interpreted beside
    it, which on the sample costs less than a second pass over every row to pick the sample)."""
    from pyspark.sql import functions as F

    arithmetic = [F.count(F.lit(1)).alias("rows")]
    sketches = []
    quantiles = []
    for column, dtype in plan.dtypes.items():
        col = F.col(column)
        arithmetic.append(F.count(col).alias(f"nonnull__{column}"))
        if column not in counted:
            sketches.append(F.approx_count_distinct(col, DISTINCT_RSD).alias(f"distinct__{column}"))
        # Text min and max need buffers of varying width, which only the sketch aggregation has.
        bounds = sketches if dtype == "string" else arithmetic
        if plan.roles[column] != "pii" and not (dtype == "string" and column in counted):
            bounds.append(F.min(col).cast("string").alias(f"min__{column}"))
            bounds.append(F.max(col).cast("string").alias(f"max__{column}"))
        if dtype in NUMERIC_TYPES:
            value = col.cast("double")
            arithmetic.append(F.mean(value).alias(f"mean__{column}"))
            arithmetic.append(F.stddev_samp(value).alias(f"stddev__{column}"))
            arithmetic.append(F.min(value).alias(f"lo__{column}"))
            arithmetic.append(F.max(value).alias(f"hi__{column}"))
            probabilities = F.array(*[F.lit(q) for q in QUANTILES])
            quantiles.append(
                F.percentile_approx(value, probabilities, QUANTILE_ACCURACY).alias(f"q__{column}")
            )
    correlations = [
        F.corr(F.col(a).cast("double"), F.col(b).cast("double")).alias(_pair(a, b))
        for i, a in enumerate(plan.correlated)
        for b in plan.correlated[i + 1 :]
    ]
    return arithmetic, sketches, quantiles + correlations


def summarise(df: DataFrame, *, plan: ProfilePlan, counted: Collection[str] = ()) -> dict[str, Any]:
    """Pass 1 but the value counts: every statistic (any grain in), as `<stat>__<column>`; the
    quantiles and correlations over a stable sample of SAMPLE_ROWS rows, about, when there are
    more. The `counted` columns get no distinct count, and no min or max if text (see
    summary_aggregates).

    An aggregation per kind, not one: a sketch in an aggregation stops Spark from compiling any of
    it, and a correlation's update is many times a mean's, so the correlations of every pair over
    every row would cost more than the rest of the profile.
    """
    arithmetic, sketches, sampled = summary_aggregates(plan, counted)
    with compiled_wide_rows(df.sparkSession, len(arithmetic)):
        stats = _one_row(df.agg(*arithmetic))
    if sketches:
        stats |= _one_row(df.agg(*sketches))
    share = SAMPLE_ROWS / stats["rows"] if stats["rows"] else 1.0
    sample = df.where(in_sample(df, plan, share)) if share < 1.0 else df
    if sampled:
        stats |= _one_row(sample.agg(*sampled))
    return stats


def in_sample(df: DataFrame, plan: ProfilePlan, share: float) -> Column:
    """True for about `share` of the rows, always the same ones: a seeded hash of the row's keys
    (of every column when the plan has none) below `share` of the hash's range. Unlike rand(),
    it does not depend on how the rows are partitioned."""
    from pyspark.sql import functions as F

    keys = [c for c, role in plan.roles.items() if role == "key"] or df.columns
    threshold = -(2**63) + int(share * 2**64)  # xxhash64 is a long over [-2**63, 2**63)
    return F.xxhash64(F.lit(SAMPLE_SEED), *keys) < F.lit(threshold)


def _one_row(aggregated: DataFrame) -> dict[str, Any]:
    row = aggregated.first()
    assert row is not None  # a global aggregate always returns one row
    return row.asDict()


@contextmanager
def compiled_wide_rows(spark: SparkSession, fields: int) -> Iterator[None]:
    """Let whole-stage code generation compile a plan whose rows have `fields` columns.

    Spark interprets any plan wider than spark.sql.codegen.maxFields (100): a profile's row of
    statistics is wider than that for a handful of columns.
    """
    key = "spark.sql.codegen.maxFields"
    before = spark.conf.get(key)
    if before is not None and int(before) >= fields:
        yield
        return
    with temporary_conf(spark, key, str(fields)):
        yield


def joint_value_counts(
    df: DataFrame, *, categorical: list[str], limit: int = JOINT_GROUPS_LIMIT
) -> dict[str, dict[str | None, int]] | None:
    """Count of each value (as text; null for nulls) of each categorical column, from one
    grouping by all of them at once, summed per column on the driver: no row is stacked. None
    when the columns' value combinations are more than `limit` (see stacked_value_counts)."""
    from pyspark.sql import functions as F

    if not categorical:
        return {}
    grouped = df.groupBy(*categorical).count()  # by value, then as text: no cast per row
    as_text = [F.col(c).cast("string").alias(c) for c in categorical]
    joint = grouped.select(*as_text, "count").limit(limit + 1).collect()
    if len(joint) > limit:
        return None
    counts: dict[str, dict[str | None, int]] = {c: {} for c in categorical}
    for row in joint:
        for c in categorical:
            counts[c][row[c]] = counts[c].get(row[c], 0) + row["count"]
    return counts


def stacked_value_counts(
    df: DataFrame, *, categorical: list[str], top: int = TOP_VALUES
) -> dict[str, dict[str | None, int]]:
    """Each categorical column's `top` most frequent values (as text) and their counts, from
    value_counts: for columns whose value combinations are too many to group jointly."""
    counts: dict[str, dict[str | None, int]] = {}
    for row in value_counts(df, categorical=categorical, top=top).collect():
        counts.setdefault(row["column"], {})[row["value"]] = row["count"]
    return counts


def value_counts(df: DataFrame, *, categorical: list[str], top: int = TOP_VALUES) -> DataFrame:
    """Counts of (column, value) of categorical columns, by stacking: each keeps its `top` most
    frequent values (a null value is counted as null)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not categorical:
        return df.sparkSession.createDataFrame([], "column string, value string, count long")
    cells = [
        F.struct(F.lit(c).alias("column"), F.col(c).cast("string").alias("value"))
        for c in categorical
    ]
    stacked = df.select(F.explode(F.array(*cells)).alias("cell")).select("cell.*")
    counts = stacked.groupBy("column", "value").count()
    by_count = Window.partitionBy("column").orderBy(F.desc("count"), "value")
    ranked = counts.withColumn("_rank", F.row_number().over(by_count))
    return ranked.where(F.col("_rank") <= top).drop("_rank")


def counted_stats(plan: ProfilePlan, values: dict[str, dict[str | None, int]]) -> dict[str, Any]:
    """The distinct count of each counted column, and the min and max of its text values (as the
    sketches would name them): exact, from every value's count. Text compares as Spark compares
    it: UTF-8 byte order is code point order."""
    stats: dict[str, Any] = {}
    for column, counts in values.items():
        present = [v for v in counts if v is not None]
        stats[f"distinct__{column}"] = len(present)
        if plan.dtypes[column] == "string" and plan.roles[column] != "pii":
            stats[f"min__{column}"] = min(present, default=None)
            stats[f"max__{column}"] = max(present, default=None)
    return stats


# ---------------------------------------------------------------- pass 2: histogram bins


def bin_edges(lo: float | None, hi: float | None, bins: int = HISTOGRAM_BINS) -> list[float]:
    """`bins` equal-width bins over [lo, hi]; a constant column gets one bin."""
    if lo is None or hi is None or not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo, lo]
    width = (hi - lo) / bins
    return [lo + i * width for i in range(bins)] + [hi]


def _bin_index(column: str, bounds: list[float]) -> Column:
    """The bin of each value (null for null): the maximum lands in the last bin, not past it."""
    from pyspark.sql import functions as F

    lo, hi, bins = bounds[0], bounds[-1], len(bounds) - 1
    value = F.col(column).cast("double")
    # least() skips nulls, so a null would land in the last bin without the when().
    return F.when(
        value.isNotNull(),
        F.least(F.floor((value - lo) / F.lit((hi - lo) / bins or 1.0)), F.lit(bins - 1)),
    )


def bin_counts(df: DataFrame, *, edges: dict[str, list[float]]) -> dict[str, list[int]]:
    """Histogram counts of each binned column, from one grouped count of integer cell codes.

    Each row gives one code per binned column, the column's position times a stride plus its bin
    (null for a null value), and the codes are counted. A whole number is hashed and compared far
    faster than a (column, bin) pair of strings, and than a conditional count per column and bin
    (bench/README.md, figures behind design choices).
    """
    from pyspark.sql import functions as F

    if not edges:
        return {}
    stride = max(len(e) for e in edges.values())  # more than any column's number of bins
    codes = [
        (_bin_index(c, e) + position * stride).cast("int")
        for position, (c, e) in enumerate(edges.items())
    ]
    cells = df.select(F.explode(F.array(*codes)).alias("cell")).where(F.col("cell").isNotNull())
    counted = {row["cell"]: row["count"] for row in cells.groupBy("cell").count().collect()}
    return {
        c: [int(counted.get(position * stride + i, 0)) for i in range(len(e) - 1)]
        for position, (c, e) in enumerate(edges.items())
    }


# ---------------------------------------------------------------- assembling


def compute_profile(df: DataFrame, *, plan: ProfilePlan) -> list[ColumnProfile]:
    """Run both passes (the caller caches `df`) and assemble one ColumnProfile per column."""
    values = joint_value_counts(df, categorical=plan.top_values, limit=JOINT_GROUPS_LIMIT)
    if values is None:  # too many combinations: the sketches count the categoricals' values
        stats = summarise(df, plan=plan)
        values = stacked_value_counts(df, categorical=plan.top_values)
    else:
        stats = summarise(df, plan=plan, counted=plan.top_values) | counted_stats(plan, values)
    edges = {c: bin_edges(stats[f"lo__{c}"], stats[f"hi__{c}"]) for c in plan.histogram}
    edges = {c: e for c, e in edges.items() if e}
    bins = bin_counts(df, edges=edges)
    return [
        _column_profile(c, plan, stats, edges.get(c), bins.get(c), values.get(c, {}))
        for c in plan.dtypes
    ]


def _column_profile(
    column: str,
    plan: ProfilePlan,
    stats: dict[str, Any],
    edges: list[float] | None,
    bins: list[int] | None,
    values: dict[str | None, int],
) -> ColumnProfile:
    rows = int(stats["rows"])
    nulls = rows - int(stats[f"nonnull__{column}"])
    numeric = plan.dtypes[column] in NUMERIC_TYPES
    quantiles = stats.get(f"q__{column}") if numeric else None
    histogram = None
    if edges and bins is not None:
        histogram = json.dumps({"edges": edges, "counts": bins})
    top = None
    if column in plan.top_values:
        ranked = sorted(((v, n) for v, n in values.items() if v is not None), key=_by_count)
        top = json.dumps(ranked[:TOP_VALUES])
    correlations = None
    if column in plan.correlated:
        found = {}
        for other in plan.correlated:
            if other != column:
                pair = (
                    _pair(column, other) if _pair(column, other) in stats else _pair(other, column)
                )
                found[other] = _finite(stats[pair])
        correlations = json.dumps(found)
    return ColumnProfile(
        column=column,
        dtype=plan.dtypes[column],
        role=plan.roles[column],
        rows=rows,
        nulls=nulls,
        null_rate=nulls / rows if rows else 0.0,
        distinct_approx=int(stats[f"distinct__{column}"]),
        min=stats.get(f"min__{column}"),
        max=stats.get(f"max__{column}"),
        mean=_finite(stats.get(f"mean__{column}")),
        stddev=_finite(stats.get(f"stddev__{column}")),
        quantiles=None
        if quantiles is None
        else json.dumps(dict(zip(map(str, QUANTILES), quantiles, strict=True))),
        histogram=histogram,
        top_values=top,
        correlations=correlations,
    )


def _by_count(value_count: tuple[str, int]) -> tuple[int, str]:
    """Most frequent first; ties by value, so the top list does not depend on row order."""
    value, count = value_count
    return -count, value


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def profile_frame(
    spark: SparkSession, profiles: list[ColumnProfile], *, run_date: date, usecase: str
) -> DataFrame:
    """The profile table's rows: one per column and run_date, columns as catalog.PROFILE_SCHEMA."""
    rows = [(run_date, usecase, *astuple(p)) for p in profiles]
    return spark.createDataFrame(rows, schema=catalog.PROFILE_SCHEMA)


@dataclass
class ProfileHistory:
    """Null rate per column and run_date, from the profile table (for the report's trend plot)."""

    null_rates: dict[str, dict[date, float]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[tuple[date, str, float]]) -> ProfileHistory:
        history = cls()
        for run_date, column, rate in rows:
            history.null_rates.setdefault(column, {})[run_date] = rate
        return history
