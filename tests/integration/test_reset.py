"""`prescore reset`: one use case's derived state goes, every other use case's stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from prescore.catalog import PUBLISH_LOG, PUBLISH_LOG_SCHEMA
from prescore.config import Settings, UseCase, load_usecase
from prescore.platform import tables
from prescore.serving import publish_log
from prescore.serving.reset import derived_tables, reset_usecase
from prescore.serving.snapshot import publish_lock, usecase_dir

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 1)


def _write_table(spark: SparkSession, settings: Settings, table: str) -> None:
    frame = spark.createDataFrame([(RUN_DATE, 1)], "run_date date, x int")
    tables.replace_run(frame, settings, table, RUN_DATE)


def _log_event(spark: SparkSession, settings: Settings, usecase: str) -> None:
    row = (usecase, RUN_DATE, "publish", 0, "m", "1", "s", "{}", datetime(2026, 11, 1, 6))
    tables.append(spark.createDataFrame([row], PUBLISH_LOG_SCHEMA), settings, PUBLISH_LOG)


def _serving_and_reports(settings: Settings, usecase: UseCase) -> None:
    snapshots = usecase_dir(settings, usecase) / "snapshots"
    snapshots.mkdir(parents=True)
    published = snapshots / "2026-11-01-v0.duckdb"
    published.write_text("snapshot")
    published.chmod(0o444)  # as publish leaves it
    (usecase_dir(settings, usecase) / "current.duckdb").symlink_to(published)
    report = settings.reports_dir / usecase.name / "data.html"
    report.parent.mkdir(parents=True)
    report.write_text("report")


def _prescore(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(settings.state_dir)}
    prescore = str(Path(sys.executable).with_name("prescore"))
    return subprocess.run(
        [prescore, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def two_usecases(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> tuple[Settings, UseCase, UseCase]:
    """churn with every derived table, a snapshot and a report; forecast with some of each and
    a publish_log row (churn has none, so the CLI's reset needs no JVM)."""
    forecast = load_usecase("forecast", fresh_settings)
    for table in derived_tables(churn, keep_raw=False):
        _write_table(spark, fresh_settings, table)
    for table in (forecast.raw_table, forecast.clean_table, forecast.predictions_table):
        _write_table(spark, fresh_settings, table)
    _log_event(spark, fresh_settings, "forecast")
    _serving_and_reports(fresh_settings, churn)
    _serving_and_reports(fresh_settings, forecast)
    return fresh_settings, churn, forecast


def _left(settings: Settings, names: list[str]) -> list[str]:
    return [t for t in names if tables.exists(settings, t)]


def test_reset_removes_one_usecase_and_nothing_of_another(
    two_usecases: tuple[Settings, UseCase, UseCase],
) -> None:
    settings, churn, forecast = two_usecases
    churn_tables = derived_tables(churn, keep_raw=False)
    forecast_tables = [forecast.raw_table, forecast.clean_table, forecast.predictions_table]

    with publish_lock(settings, churn, "publish"):  # a publish is running: refused, nothing gone
        locked = _prescore(settings, "reset", "--usecase", "churn")
    assert locked.returncode == 1
    assert "another publish or rollback is running" in locked.stderr
    assert _left(settings, churn_tables) == churn_tables

    kept_raw = _prescore(settings, "reset", "--usecase", "churn", "--keep-raw")
    assert kept_raw.returncode == 0, kept_raw.stderr
    summary = json.loads(kept_raw.stdout)
    assert summary["removed_tables"] == churn_tables[1:]  # all but raw_customers
    assert _left(settings, churn_tables) == [churn.raw_table]
    assert "left alone" in summary["kept"]["mlflow"]
    assert not (usecase_dir(settings, churn) / "current.duckdb").exists()
    assert not (usecase_dir(settings, churn) / "snapshots").exists()
    assert not (settings.reports_dir / "churn").exists()

    again = _prescore(settings, "reset", "--usecase", "churn")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["removed_tables"] == [churn.raw_table]
    assert _left(settings, churn_tables) == []

    assert _left(settings, forecast_tables) == forecast_tables  # the other use case: untouched
    assert (usecase_dir(settings, forecast) / "current.duckdb").read_text() == "snapshot"
    assert (settings.reports_dir / "forecast" / "data.html").exists()
    assert len(publish_log.read_with_duckdb(settings, forecast)) == 1


def test_reset_deletes_only_its_own_publish_log_rows(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    forecast = load_usecase("forecast", fresh_settings)
    _log_event(spark, fresh_settings, "churn")
    _log_event(spark, fresh_settings, "forecast")

    removed = reset_usecase(fresh_settings, churn, keep_raw=False, spark=lambda: spark)

    assert removed["publish_log_rows_deleted"] == 1
    assert publish_log.read(spark, fresh_settings, churn) == []
    assert len(publish_log.read(spark, fresh_settings, forecast)) == 1
