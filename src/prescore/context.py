"""What every stage receives: settings, the use case, the logical date and the Spark session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.platform.spark import get_spark, source_packages

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    usecase: UseCase
    run_date: date
    spark: SparkSession

    @classmethod
    def create(cls, usecase: str, run_date: date, settings: Settings | None = None) -> RunContext:
        settings = settings or load_settings()
        loaded = load_usecase(usecase, settings)
        # The session's packages are fixed when it starts: it must load the source's JDBC driver.
        return cls(settings, loaded, run_date, get_spark(settings, source_packages(loaded)))
