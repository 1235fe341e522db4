"""Which rows a run date scores, and how many predictions that makes: read by score and publish.

One row per key of the clean run date, or for a time series one row per series seen in the last
`context_days` and horizon day. The reads go through platform.tables at one clean version, so the
publish stage counts exactly the population the score stage scored.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from prescore.platform import tables
from prescore.scoring.predict import require_model_columns
from prescore.training import timeseries

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, UseCase


def rows_to_score(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> DataFrame:
    """The clean run date's rows, or for a time series one row per series seen in the last
    `context_days` and horizon, with the features of origin run_date."""
    table = f"{usecase.clean_table} v{clean_version}"
    if usecase.time_series is None:
        clean = tables.read_run(spark, settings, usecase.clean_table, run_date, clean_version)
        require_model_columns(clean, usecase=usecase, table=table)
        return clean
    history = scoring_history(spark, settings, usecase, run_date, clean_version)
    require_model_columns(history, usecase=usecase, table=table)
    return timeseries.scoring_frame(history, usecase=usecase, run_date=run_date)


def scoring_history(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> DataFrame:
    """A time series' clean days that scoring run_date reads: its longest lag or window back."""
    assert usecase.time_series is not None
    days = usecase.time_series.context_days
    return timeseries.read_history(
        spark, settings, usecase, run_date, days=days, version=clean_version
    )


def scored_population(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> int:
    """How many predictions score writes for run_date from this clean version: one per key, or
    one per series and horizon for a time series."""
    if usecase.time_series is None:
        return tables.read_run(
            spark, settings, usecase.clean_table, run_date, clean_version
        ).count()
    history = scoring_history(spark, settings, usecase, run_date, clean_version)
    return timeseries.series_count(history, usecase=usecase) * usecase.time_series.horizon_days
