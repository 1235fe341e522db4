"""Time-series features in Spark, without leakage: lags, rolling means, calendar and horizon.

The shape is direct multi-horizon forecasting: one model, one row per (series, origin day t,
horizon h in 1..H), label = the value on day t + h. The origin t is the last observed day (the run
date when scoring), so every feature of an origin reads days <= t only:

    <label>_lag_<k>     the value on day t - k (lag 0 is day t itself), null when that day is
                        missing: lags count calendar days, not rows
    <label>_mean_<w>d   the mean of the observed values of days t-w+1 .. t
    calendar features   of the TARGET day t + h (known in advance)
    horizon             h
    source features     their value on day t

Pure DataFrame -> DataFrame transforms; the stages read the clean history and write the results.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from prescore.catalog import HORIZON, TARGET_DATE
from prescore.platform import tables

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from prescore.config import Settings, TimeSeriesSettings, UseCase

ORIGIN_DATE = "origin_date"
_DAY = "_day"  # days since 1970-01-01: a number, so windows can range over calendar days
_EPOCH = date(1970, 1, 1)


def _time_series(usecase: UseCase) -> TimeSeriesSettings:
    if usecase.time_series is None:
        raise ValueError(f"use case {usecase.name!r} has no time_series block")
    return usecase.time_series


# ---------------------------------------------------------------- history


def latest_rows(clean: DataFrame, *, usecase: UseCase, run_date: date, days: int) -> DataFrame:
    """The series' rows of the `days` days up to and including run_date, as known at run_date:
    clean run dates after it are ignored, and a day landed twice counts in its latest run date."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ts = _time_series(usecase)
    day = F.col(ts.date_column)
    first = run_date - timedelta(days=days - 1)
    window = Window.partitionBy(*usecase.row_keys).orderBy(F.col(tables.RUN_DATE).desc())
    return (
        clean.where((F.col(tables.RUN_DATE) <= F.lit(run_date)) & day.between(first, run_date))
        .withColumn("_newest", F.row_number().over(window))
        .where("_newest = 1")
        .drop("_newest", tables.RUN_DATE)
    )


def dense_grid(
    history: DataFrame, *, keys: list[str], date_column: str, first: date, last: date
) -> DataFrame:
    """Every series of `history` on every day first..last: a day without a row has null values."""
    from pyspark.sql import functions as F

    days = history.sparkSession.range((last - first).days + 1).select(
        F.date_add(F.lit(first), F.col("id").cast("int")).alias(date_column)
    )
    series = history.select(*keys).distinct()
    return series.crossJoin(days).join(history, [*keys, date_column], "left")


def _day_number(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.datediff(F.col(column), F.lit(_EPOCH))


def origin_features(
    dense: DataFrame, *, keys: list[str], date_column: str, value: str, ts: TimeSeriesSettings
) -> DataFrame:
    """Lags and rolling means of `value` for every row taken as an origin (days <= its own)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_day = Window.partitionBy(*keys).orderBy(_DAY)
    df = dense.withColumn(_DAY, _day_number(date_column))
    for k in ts.lags:
        df = df.withColumn(f"{value}_lag_{k}", F.max(value).over(by_day.rangeBetween(-k, -k)))
    for w in ts.rolling_means:
        mean = F.avg(F.col(value).cast("double")).over(by_day.rangeBetween(-(w - 1), 0))
        df = df.withColumn(f"{value}_mean_{w}d", mean)
    return df.drop(_DAY)


def future_values(
    dense: DataFrame, *, keys: list[str], date_column: str, value: str, horizon_days: int
) -> DataFrame:
    """A `_future` array column: the value on each day t+1 .. t+H (null where not observed)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_day = Window.partitionBy(*keys).orderBy(_DAY)
    ahead = [F.max(value).over(by_day.rangeBetween(h, h)) for h in range(1, horizon_days + 1)]
    return (
        dense.withColumn(_DAY, _day_number(date_column))
        .withColumn("_future", F.array(*ahead))
        .drop(_DAY)
    )


def with_horizons(origins: DataFrame, *, date_column: str, horizon_days: int) -> DataFrame:
    """One row per origin and horizon h in 1..H: origin_date, horizon and target_date added.
    With a `_future` column (training), the label column `_target_value` is its h-th value."""
    from pyspark.sql import functions as F

    df = origins.withColumn(HORIZON, F.explode(F.sequence(F.lit(1), F.lit(horizon_days))))
    if "_future" in df.columns:
        df = df.withColumn("_target_value", F.element_at("_future", F.col(HORIZON))).drop("_future")
    return df.withColumnRenamed(date_column, ORIGIN_DATE).withColumn(
        TARGET_DATE, F.date_add(F.col(ORIGIN_DATE), F.col(HORIZON))
    )


def calendar_features(
    df: DataFrame, *, column: str, calendar: list[str], holidays: list[str]
) -> DataFrame:
    """The calendar features of the day in `column` (day_of_week: 1 Sunday .. 7 Saturday)."""
    from pyspark.sql import functions as F

    day = F.col(column)
    build = {
        "day_of_week": lambda: F.dayofweek(day),
        "day_of_month": lambda: F.dayofmonth(day),
        "day_of_year": lambda: F.dayofyear(day),
        "week_of_year": lambda: F.weekofyear(day),
        "month": lambda: F.month(day),
        "is_weekend": lambda: F.dayofweek(day).isin(1, 7).cast("int"),
        "holiday": lambda: F.date_format(day, "MM-dd").isin(*holidays).cast("int"),
    }
    for name in calendar:
        df = df.withColumn(name, build[name]())
    return df


# ---------------------------------------------------------------- the model's rows


def _featured(history: DataFrame, *, usecase: UseCase, first: date, last: date) -> DataFrame:
    ts = _time_series(usecase)
    dense = dense_grid(
        history.select(*usecase.row_keys, usecase.label, *usecase.source_features),
        keys=usecase.keys,
        date_column=ts.date_column,
        first=first,
        last=last,
    )
    return origin_features(
        dense, keys=usecase.keys, date_column=ts.date_column, value=usecase.label, ts=ts
    )


def supervised_frame(history: DataFrame, *, usecase: UseCase, run_date: date) -> DataFrame:
    """Training rows from the history up to run_date: one per series, origin and horizon whose
    target day is observed; the label column holds the value on the target day."""
    from pyspark.sql import functions as F

    ts = _time_series(usecase)
    first = run_date - timedelta(days=ts.history_days - 1)
    featured = _featured(history, usecase=usecase, first=first, last=run_date).transform(
        future_values,
        keys=usecase.keys,
        date_column=ts.date_column,
        value=usecase.label,
        horizon_days=ts.horizon_days,
    )
    return (
        featured.drop(usecase.label)
        .transform(with_horizons, date_column=ts.date_column, horizon_days=ts.horizon_days)
        .withColumnRenamed("_target_value", usecase.label)
        .where(F.col(usecase.label).isNotNull())
        .transform(
            calendar_features, column=TARGET_DATE, calendar=ts.calendar, holidays=ts.holidays
        )
    )


def scoring_frame(history: DataFrame, *, usecase: UseCase, run_date: date) -> DataFrame:
    """Rows to score at run_date: one per series and horizon, origin run_date, target_date
    run_date + h, features from the history up to run_date."""
    from pyspark.sql import functions as F

    ts = _time_series(usecase)
    first = run_date - timedelta(days=ts.context_days - 1)
    return (
        _featured(history, usecase=usecase, first=first, last=run_date)
        .where(F.col(ts.date_column) == F.lit(run_date))
        .drop(usecase.label)
        .transform(with_horizons, date_column=ts.date_column, horizon_days=ts.horizon_days)
        .transform(
            calendar_features, column=TARGET_DATE, calendar=ts.calendar, holidays=ts.holidays
        )
    )


# ---------------------------------------------------------------- reading the clean table


def read_history(
    spark: SparkSession,
    settings: Settings,
    usecase: UseCase,
    run_date: date,
    *,
    days: int,
    version: int | None = None,
) -> DataFrame:
    """latest_rows of the clean table (at `version`); an error naming the table when run_date
    itself was never cleaned (as for any use case: no forecast from stale data alone)."""
    tables.read_run(spark, settings, usecase.clean_table, run_date, version)  # raises if absent
    clean = tables.read(spark, settings, usecase.clean_table, version)
    return latest_rows(clean, usecase=usecase, run_date=run_date, days=days)


def series_count(history: DataFrame, *, usecase: UseCase) -> int:
    return history.select(*usecase.keys).distinct().count()
