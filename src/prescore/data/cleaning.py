"""Cleaning's pure transforms: row rules, anonymisation, the fitted statistics and the split.

Grain: one row per raw row in; the stage (stages/clean.py) sends the rows flagged with a
QUARANTINE_REASON to quarantine_<entity> and the rest, cleaned, to clean_<entity>, one row per
key and run_date (for a time series: per key, day and run_date, `UseCase.row_keys`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from prescore.catalog import (
    BAD_VALUES,
    CLEANING_STATS_SCHEMA,
    QUARANTINE_REASON,
    RUN_DATE,
    SOURCE_FILE,
    SPLIT,
)
from prescore.config import RangeRule

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from pyspark.sql import Column, DataFrame, SparkSession

    from prescore.config import (
        CleaningSettings,
        DerivedColumn,
        ImputeRule,
        OutlierRule,
        PiiRule,
        SplitSettings,
        UseCase,
    )

log = logging.getLogger(__name__)

REASON = QUARANTINE_REASON
DUPLICATE_REASON = "duplicate key: a newer row for the same key was kept"


class QuarantineLimitError(RuntimeError):
    """Too many rows failed the row-level rules for the run to be trusted."""


class DuplicateKeyError(ValueError):
    """Rows share a key and the use case has no event_time to tell which one is the latest."""


# ---------------------------------------------------------------- column helpers


HMAC_INNER_PAD = "_hmac_inner_pad"
HMAC_OUTER_PAD = "_hmac_outer_pad"


def hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer pads of a SHA-256 HMAC key (a key over 64 bytes is hashed first)."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256(column: Column, *, inner_pad: Column, outer_pad: Column) -> Column:
    """HMAC-SHA256 of a string column, hex encoded, computed in Spark expressions (RFC 2104),
    from the key's pads given as columns (see `with_hmac_pads`), never as literals."""
    from pyspark.sql import functions as F

    inner = F.unhex(F.sha2(F.concat(inner_pad, column.cast("binary")), 256))
    return F.sha2(F.concat(outer_pad, inner), 256)


def with_hmac_pads(df: DataFrame, *, secret: bytes) -> DataFrame:
    """`df` with the key's pads as two more columns, cross-joined from a broadcast one-row frame.

    A literal is printed in every plan (explain, the Spark UI, the event log); a row of a
    frame is not, so the key stays out of them while the hash stays native Spark code.
    """
    from pyspark.sql import functions as F

    inner, outer = hmac_pads(secret)
    pads = df.sparkSession.createDataFrame(
        [(bytearray(inner), bytearray(outer))], f"{HMAC_INNER_PAD} binary, {HMAC_OUTER_PAD} binary"
    )
    return df.crossJoin(F.broadcast(pads))


def range_violation(
    column: str, rule: RangeRule, *, what: str = "", show_value: bool = True
) -> Column:
    """A reason string where the value lies outside [min, max] (`what` names the bounds), else null.
    The value is named unless `show_value` is false (a PII column: the reason must not carry it)."""
    from pyspark.sql import functions as F

    bad = F.lit(False)
    if rule.min is not None:
        bad = bad | (F.col(column) < rule.min)
    if rule.max is not None:
        bad = bad | (F.col(column) > rule.max)
    bounds = f"[{rule.min if rule.min is not None else '-inf'}, {rule.max if rule.max is not None else 'inf'}]"
    if not show_value:
        return F.when(bad, F.lit(f"{column} outside {what}{bounds}"))
    return F.when(
        bad,
        F.concat(
            F.lit(f"{column}="), F.col(column).cast("string"), F.lit(f" outside {what}{bounds}")
        ),
    )


def unparsed_values(declared: Mapping[str, str], *, pii: Collection[str] = ()) -> Column:
    """A reason naming each column of the row's BAD_VALUES (the text ingest could not parse as
    the declared type), its text unless the column is in `pii`, and the file; else null:
    `column 'x' value 'abc' is not double (file part-0.csv)`."""
    from pyspark.sql import functions as F

    parts = []
    for column, kind in declared.items():
        if kind == "string":  # text is never unparsed
            continue
        text = F.col(BAD_VALUES).getItem(column)
        shown = (
            F.lit("(PII, not shown)") if column in pii else F.concat(F.lit("'"), text, F.lit("'"))
        )
        described = F.concat(F.lit(f"column '{column}' value "), shown, F.lit(f" is not {kind}"))
        parts.append(F.when(text.isNotNull(), described))
    file = F.concat(F.lit(" (file "), F.coalesce(F.col(SOURCE_FILE), F.lit("?")), F.lit(")"))
    found = F.concat_ws(", ", *parts)
    return F.when(F.size(F.col(BAD_VALUES)) > 0, F.concat(found, file))


# ---------------------------------------------------------------- transforms


def add_derived_columns(df: DataFrame, *, derive: dict[str, DerivedColumn]) -> DataFrame:
    """`df` with each derived column computed from its row's source columns and cast to its
    declared type (Spark's ANSI rules: a value that does not fit fails the run, loudly).
    Grain unchanged: one row per row in."""
    from pyspark.sql import functions as F

    if not derive:
        return df
    return df.withColumns({c: F.expr(d.sql).cast(d.type) for c, d in derive.items()})


def flag_invalid_rows(
    df: DataFrame,
    *,
    keys: list[str],
    valid_range: dict[str, RangeRule],
    pii: Collection[str] = (),
    declared: Mapping[str, str] | None = None,
) -> DataFrame:
    """Add _quarantine_reason: the first failed row rule (a value ingest could not parse as its
    `declared` type, null key, value out of range), else null. A reason names the value it
    found, unless the column is in `pii`. Raw rows without BAD_VALUES (ingested before it
    existed) have no unparsed values."""
    from pyspark.sql import functions as F

    reasons = []
    if declared is not None and BAD_VALUES in df.columns:
        reasons.append(unparsed_values(declared, pii=pii))
    reasons += [F.when(F.col(k).isNull(), F.lit(f"null key {k}")) for k in keys]
    reasons += [
        range_violation(c, rule, show_value=c not in pii) for c, rule in valid_range.items()
    ]
    return df.withColumn(REASON, F.coalesce(*reasons))


def flag_duplicates(df: DataFrame, *, keys: list[str], event_time: str) -> DataFrame:
    """Among rows not yet flagged, keep the latest per key; flag the older ones as duplicates."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # Invalid rows rank apart, so an invalid newer row never displaces a valid older one.
    window = Window.partitionBy(*keys, F.col(REASON).isNull()).orderBy(
        F.col(event_time).desc_nulls_last(), F.col("_source_file")
    )
    rank = F.when(F.col(REASON).isNull(), F.row_number().over(window))
    return df.withColumn(REASON, F.when(rank > 1, F.lit(DUPLICATE_REASON)).otherwise(F.col(REASON)))


def duplicate_keys(df: DataFrame, *, keys: list[str]) -> DataFrame:
    """The keys held by more than one row not yet flagged: one row per such key, its columns and
    `rows`, how many rows hold it."""
    from pyspark.sql import functions as F

    held = df.where(F.col(REASON).isNull()).groupBy(*keys).agg(F.count(F.lit(1)).alias("rows"))
    return held.where(F.col("rows") > 1)


def generalised(column: Column, rule: PiiRule) -> Column:
    """A coarser value: the integer band holding it ("30-39" for band 10), or its first `keep`
    characters; null stays null."""
    from pyspark.sql import functions as F

    if rule.band is not None:
        low = F.floor(column / rule.band) * rule.band
        return F.concat(low.cast("string"), F.lit("-"), (low + rule.band - 1).cast("string"))
    assert rule.keep is not None  # PiiRule allows generalise with exactly one of band, keep
    return F.substring(column, 1, rule.keep)


def anonymise(df: DataFrame, *, pii: dict[str, PiiRule], secret: bytes) -> DataFrame:
    """Replace PII columns by their keyed hash or a generalised value, or drop them; the other
    columns pass through unchanged. Clean and quarantine both anonymise with this function."""
    from pyspark.sql import functions as F

    hashed = [c for c, rule in pii.items() if rule.method == "hash" and c in df.columns]
    if hashed:
        df = with_hmac_pads(df, secret=secret)
    for column, rule in pii.items():
        if column not in df.columns:
            continue
        if rule.method == "drop":
            df = df.drop(column)
        elif rule.method == "generalise":
            df = df.withColumn(column, generalised(df[column], rule))
        else:
            pads = {"inner_pad": F.col(HMAC_INNER_PAD), "outer_pad": F.col(HMAC_OUTER_PAD)}
            df = df.withColumn(column, hmac_sha256(df[column], **pads))
    return df.drop(HMAC_INNER_PAD, HMAC_OUTER_PAD) if hashed else df


def assign_split(
    df: DataFrame,
    *,
    keys: list[str],
    split: SplitSettings,
    event_time: str | None = None,
    run_date: date | None = None,
) -> DataFrame:
    """train / validation / test from a seeded hash of the key, or (by time) from the row's
    event_time against the run date: stable across reruns and partitioning either way."""
    from pyspark.sql import functions as F

    if split.by == "time":
        if event_time is None or run_date is None:
            raise ValueError("split by time needs the event_time column and the run date")
        day = F.to_date(F.col(event_time))
        test_from = F.date_sub(F.lit(run_date), split.test_days - 1)
        validation_from = F.date_sub(test_from, split.validation_days)
        by_time = (
            F.when(day.isNull(), None)
            .when(day >= test_from, "test")
            .when(day >= validation_from, "validation")
            .otherwise("train")
        )
        return df.withColumn(SPLIT, by_time)
    bucket = F.pmod(F.xxhash64(F.lit(split.seed), *[F.col(k) for k in keys]), 10_000) / 10_000.0
    label = (
        F.when(bucket < split.train, "train")
        .when(bucket < split.train + split.validation, "validation")
        .otherwise("test")
    )
    return df.withColumn(SPLIT, label)


# ---------------------------------------------------------------- statistics fitted on train rows


@dataclass(frozen=True)
class FittedCleaning:
    """Fill values and outlier bounds, fitted on one run_date's train split (constants as given)."""

    fill: dict[str, float | int | str] = field(default_factory=dict)
    bounds: dict[str, RangeRule] = field(default_factory=dict)
    fitted_rows: int = 0

    @classmethod
    def constants(cls, cleaning: CleaningSettings) -> FittedCleaning:
        """Only what needs no fitting: fill and constant impute values."""
        fill = dict(cleaning.fill)
        fill.update({c: r.value for c, r in cleaning.impute.items() if r.value is not None})
        return cls(fill=fill)


def fit_aggregates(cleaning: CleaningSettings) -> list[Column]:
    """One aggregate per statistic the impute and outlier rules need, named `<stat>__<column>`."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("rows")]
    for column, rule in cleaning.impute.items():
        if rule.strategy == "mean":
            aggs.append(F.mean(column).alias(f"mean__{column}"))
        elif rule.strategy == "median":
            aggs.append(F.percentile_approx(column, 0.5, 10_000).alias(f"median__{column}"))
        elif rule.strategy == "mode":  # ties: the smallest value, so a rerun fits the same
            aggs.append(F.mode(column, deterministic=True).alias(f"mode__{column}"))
    for column, outlier in cleaning.outliers.items():
        value = F.col(column).cast("double")
        if outlier.method == "iqr":
            quartiles = F.percentile_approx(value, F.array(F.lit(0.25), F.lit(0.75)), 10_000)
            aggs.append(quartiles.alias(f"quartiles__{column}"))
        else:
            aggs.append(F.mean(value).alias(f"zmean__{column}"))
            aggs.append(F.stddev_samp(value).alias(f"zstd__{column}"))
    return aggs


def fitted_from(stats: Mapping[str, Any], cleaning: CleaningSettings) -> FittedCleaning:
    """Fill values and bounds from the one row of `fit_aggregates` (a column of nulls fits none)."""
    fill = FittedCleaning.constants(cleaning).fill
    for column, rule in cleaning.impute.items():
        value = stats.get(f"{rule.strategy}__{column}")
        if value is not None:
            fill[column] = value
    bounds = {}
    for column, outlier in cleaning.outliers.items():
        if outlier.method == "iqr" and stats[f"quartiles__{column}"]:
            q1, q3 = stats[f"quartiles__{column}"]
            low, high = q1 - outlier.k * (q3 - q1), q3 + outlier.k * (q3 - q1)
        elif outlier.method == "zscore" and stats.get(f"zstd__{column}") is not None:
            mean, std = stats[f"zmean__{column}"], stats[f"zstd__{column}"]
            low, high = mean - outlier.k * std, mean + outlier.k * std
        else:
            continue
        if math.isfinite(low) and math.isfinite(high):
            bounds[column] = RangeRule(min=low, max=high)
    return FittedCleaning(fill=fill, bounds=bounds, fitted_rows=int(stats["rows"]))


def flag_fitted_rules(
    df: DataFrame,
    *,
    impute: dict[str, ImputeRule],
    outliers: dict[str, OutlierRule],
    bounds: dict[str, RangeRule],
    pii: Collection[str] = (),
) -> DataFrame:
    """Rows not yet flagged get a reason if a `drop` impute column is null or a `quarantine`
    outlier column lies outside its fitted bounds (naming the value unless the column is in `pii`)."""
    from pyspark.sql import functions as F

    reasons = [F.col(REASON)]
    reasons += [
        F.when(F.col(c).isNull(), F.lit(f"missing {c} (impute: drop)"))
        for c, rule in impute.items()
        if rule.strategy == "drop"
    ]
    reasons += [
        range_violation(c, bounds[c], what=f"fitted {rule.method} bounds ", show_value=c not in pii)
        for c, rule in outliers.items()
        if rule.action == "quarantine" and c in bounds
    ]
    return df.withColumn(REASON, F.coalesce(*reasons))


def fitted_frame(
    spark: SparkSession, fitted: FittedCleaning, cleaning: CleaningSettings, *, run_date: date
) -> DataFrame:
    """The statistics table's rows: one per column with a fill value or fitted bounds."""
    rows: list[tuple[str, str, str, str | None, float | None, float | None, int]] = []
    for column, value in fitted.fill.items():
        rule = cleaning.impute.get(column)
        strategy = rule.strategy if rule else "constant"
        rows.append((column, "impute", strategy, str(value), None, None, fitted.fitted_rows))
    for column, bound in fitted.bounds.items():
        outlier = cleaning.outliers[column]
        how = f"{outlier.method} k={outlier.k:g} {outlier.action}"
        rows.append((column, "outliers", how, None, bound.min, bound.max, fitted.fitted_rows))
    return spark.createDataFrame([(run_date, *row) for row in rows], CLEANING_STATS_SCHEMA)


# ---------------------------------------------------------------- assembling


def clean_columns(usecase: UseCase) -> list[str]:
    """The declared columns clean keeps (source, then derived): all but dropped PII and
    cleaning.drop_columns."""
    dropped = {c for c, rule in usecase.pii.items() if rule.method == "drop"}
    dropped |= set(usecase.cleaning.drop_columns)
    return [c for c in usecase.column_types if c not in dropped]


def clean_rows(
    df: DataFrame, *, usecase: UseCase, secret: bytes, run_date: date | None = None
) -> DataFrame:
    """The clean frame from raw rows that passed the row rules: declared columns minus dropped
    ones, anonymised, split. Values stay as they came, missing ones included: fills, clips and
    category codes prepare the model's input and are fitted and applied with each model version
    (training.package), so a later day is scored with the values its model was trained with."""
    kept = [c for c in clean_columns(usecase) if c in df.columns]
    return (
        df.select(*kept, RUN_DATE)
        .transform(anonymise, pii=usecase.pii, secret=secret)
        .transform(
            assign_split,
            keys=usecase.keys,
            split=usecase.split,
            event_time=usecase.split_time_column,
            run_date=run_date,
        )
    )


def quarantine_rows(df: DataFrame, *, pii: dict[str, PiiRule], secret: bytes) -> DataFrame:
    """The quarantine frame: the raw row as JSON with its PII anonymised as declared (hashed,
    generalised, or left out), its reason, its source file and run_date. Only raw_<entity>
    holds PII in the clear."""
    from pyspark.sql import functions as F

    row_columns = [c for c in df.columns if c not in (REASON, RUN_DATE, BAD_VALUES)]
    anonymised = df.transform(anonymise, pii=pii, secret=secret)
    kept = [c for c in row_columns if c in anonymised.columns]
    return anonymised.select(
        F.to_json(F.struct(*kept)).alias("raw_row"),
        F.col(REASON).alias("reason"),
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(RUN_DATE),
    )


# ---------------------------------------------------------------- edges


def refuse_duplicate_keys(
    flagged: DataFrame, *, keys: list[str], table: str, run_date: date
) -> None:
    """Raise DuplicateKeyError when rows not yet flagged share a key (one aggregation), naming the
    table, the run date, the key columns, the smallest duplicated key and the counts. Without an
    event_time there is no latest row to keep: dedupe refuses instead of guessing."""
    from pyspark.sql import functions as F

    found = duplicate_keys(flagged, keys=keys).agg(
        F.count(F.lit(1)).alias("keys"),
        F.sum("rows").alias("rows"),
        F.min(F.struct(*keys)).alias("sample"),
    )
    stats = found.first()
    assert stats is not None  # a global aggregate always returns one row
    if stats["keys"]:
        sample = ", ".join(f"{k}={v!r}" for k, v in stats["sample"].asDict().items())
        raise DuplicateKeyError(
            f"{table} run_date {run_date}: {stats['keys']} key(s) of {keys} are held by more than "
            f"one row ({stats['rows']} rows), e.g. {sample}; the use case declares no event_time "
            f"to keep the latest row of a key: declare one, or remove the duplicates at the source"
        )


def fit_on_train(flagged: DataFrame, *, cleaning: CleaningSettings) -> FittedCleaning:
    """Fit fill values and outlier bounds on the valid rows of the train split (one aggregation)."""
    from pyspark.sql import functions as F

    if not cleaning.impute and not cleaning.outliers:
        return FittedCleaning.constants(cleaning)
    train = flagged.where(F.col(REASON).isNull() & (F.col(SPLIT) == "train"))
    stats = train.agg(*fit_aggregates(cleaning)).first()
    assert stats is not None  # a global aggregate always returns one row
    return fitted_from(stats.asDict(), cleaning)
