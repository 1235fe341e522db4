"""Clean: raw -> clean (typed, deduplicated, anonymised, filled, clipped, encoded, split) + quarantine.

Grain out: one row per key and run_date in clean_<entity>; every raw row that is not there is in
quarantine_<entity> with its reason, so clean + quarantined = raw for the run_date.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING

from prescore import tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from prescore.config import PiiRule, RangeRule, SplitSettings, UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)

SECRET_ENV = "PRESCORE_HMAC_KEY"
REASON = "_quarantine_reason"
SPLIT = "split"
DUPLICATE_REASON = "duplicate key: a newer row for the same key was kept"


class QuarantineLimitError(RuntimeError):
    """Too many rows failed the row-level rules for the run to be trusted."""


# ---------------------------------------------------------------- column helpers


def hmac_sha256(column: Column, secret: bytes) -> Column:
    """HMAC-SHA256 of a string column, hex encoded, computed in Spark expressions (RFC 2104)."""
    from pyspark.sql import functions as F

    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), column.cast("binary")), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def range_violation(column: str, rule: RangeRule) -> Column:
    """A reason string where the value lies outside [min, max], else null."""
    from pyspark.sql import functions as F

    bad = F.lit(False)
    if rule.min is not None:
        bad = bad | (F.col(column) < rule.min)
    if rule.max is not None:
        bad = bad | (F.col(column) > rule.max)
    bounds = f"[{rule.min if rule.min is not None else '-inf'}, {rule.max if rule.max is not None else 'inf'}]"
    return F.when(
        bad,
        F.concat(F.lit(f"{column}="), F.col(column).cast("string"), F.lit(f" outside {bounds}")),
    )


# ---------------------------------------------------------------- transforms


def flag_invalid_rows(
    df: DataFrame, *, keys: list[str], valid_range: dict[str, RangeRule]
) -> DataFrame:
    """Add _quarantine_reason: the first failed row rule (null key, value out of range), else null."""
    from pyspark.sql import functions as F

    reasons = [F.when(F.col(k).isNull(), F.lit(f"null key {k}")) for k in keys]
    reasons += [range_violation(c, rule) for c, rule in valid_range.items()]
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


def anonymise(df: DataFrame, *, pii: dict[str, PiiRule], secret: bytes) -> DataFrame:
    """Replace PII columns by their keyed hash, or drop them."""
    for column, rule in pii.items():
        if rule.method == "drop":
            df = df.drop(column)
        else:
            df = df.withColumn(column, hmac_sha256(df[column], secret))
    return df


def fill_missing(df: DataFrame, *, fill: dict[str, float | int | str]) -> DataFrame:
    return df.fillna(fill) if fill else df


def clip_outliers(df: DataFrame, *, clip: dict[str, RangeRule]) -> DataFrame:
    from pyspark.sql import functions as F

    for column, rule in clip.items():
        value = F.col(column)
        if rule.min is not None:
            value = F.greatest(value, F.lit(rule.min))
        if rule.max is not None:
            value = F.least(value, F.lit(rule.max))
        df = df.withColumn(column, F.when(F.col(column).isNull(), None).otherwise(value))
    return df


def encode_categoricals(df: DataFrame, *, levels: dict[str, list[str]]) -> DataFrame:
    """Each categorical becomes the index of its level in the declared list; unknown -> null."""
    from pyspark.sql import functions as F

    for column, values in levels.items():
        code = F.array_position(F.array(*[F.lit(v) for v in values]), F.col(column))
        df = df.withColumn(column, F.when(code > 0, (code - 1).cast("int")))
    return df


def assign_split(df: DataFrame, *, keys: list[str], split: SplitSettings) -> DataFrame:
    """train / validation / test from a seeded hash of the key: stable across reruns and partitioning."""
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64(F.lit(split.seed), *[F.col(k) for k in keys]), 10_000) / 10_000.0
    label = (
        F.when(bucket < split.train, "train")
        .when(bucket < split.train + split.validation, "validation")
        .otherwise("test")
    )
    return df.withColumn(SPLIT, label)


def clean_rows(df: DataFrame, *, usecase: UseCase, secret: bytes) -> DataFrame:
    """The clean frame from raw rows that passed the row rules: the columns the flow needs, and only those."""
    keep = [*usecase.keys, usecase.event_time, *usecase.features, usecase.label]
    keep += [c for c, rule in usecase.pii.items() if rule.method == "hash"]
    return (
        df.select(*keep, tables.RUN_DATE)
        .transform(anonymise, pii=usecase.pii, secret=secret)
        .transform(fill_missing, fill=usecase.cleaning.fill)
        .transform(clip_outliers, clip=usecase.cleaning.clip)
        .transform(encode_categoricals, levels=usecase.categorical_features)
        .transform(assign_split, keys=usecase.keys, split=usecase.split)
    )


def quarantine_rows(df: DataFrame) -> DataFrame:
    """The quarantine frame: the raw row as JSON, its reason, its source file and run_date."""
    from pyspark.sql import functions as F

    raw_columns = [c for c in df.columns if c not in (REASON, tables.RUN_DATE)]
    return df.select(
        F.to_json(F.struct(*raw_columns)).alias("raw_row"),
        F.col(REASON).alias("reason"),
        F.col("_source_file").alias("source_file"),
        F.col(tables.RUN_DATE),
    )


# ---------------------------------------------------------------- edges


def hmac_secret() -> bytes:
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise RuntimeError(
            f"{SECRET_ENV} is not set: PII hashing needs a secret key from the environment"
        )
    return secret.encode()


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    secret = hmac_secret()
    raw_version = tables.latest_version(ctx.spark, settings, usecase.raw_table)
    raw = tables.read_run(ctx.spark, settings, usecase.raw_table, ctx.run_date, raw_version)
    flagged = (
        raw.transform(
            flag_invalid_rows, keys=usecase.keys, valid_range=usecase.cleaning.valid_range
        )
        .transform(flag_duplicates, keys=usecase.keys, event_time=usecase.event_time)
        .cache()
    )
    try:
        counts = {row[0]: row[1] for row in flagged.groupBy(REASON).count().collect()}
        total = sum(counts.values())
        invalid = sum(n for reason, n in counts.items() if reason not in (None, DUPLICATE_REASON))
        quarantine_version = tables.replace_run(
            quarantine_rows(flagged.where(f"{REASON} is not null")),
            settings,
            usecase.quarantine_table,
            ctx.run_date,
        )
        limit = usecase.cleaning.max_quarantined_fraction
        if total and invalid / total > limit:
            raise QuarantineLimitError(
                f"{usecase.raw_table} run_date {ctx.run_date}: {invalid} of {total} rows "
                f"({invalid / total:.1%}) failed row rules, over the limit of {limit:.1%}; "
                f"see {usecase.quarantine_table}"
            )
        clean = clean_rows(flagged.where(f"{REASON} is null"), usecase=usecase, secret=secret)
        clean_version = tables.replace_run(clean, settings, usecase.clean_table, ctx.run_date)
    finally:
        flagged.unpersist()
    summary = {
        "raw_rows": total,
        "clean_rows": counts.get(None, 0),
        "quarantined_invalid": invalid,
        "quarantined_duplicates": counts.get(DUPLICATE_REASON, 0),
        "raw_version": raw_version,
        "clean_version": clean_version,
        "quarantine_version": quarantine_version,
    }
    log.info("clean: %s", summary)
    return summary
