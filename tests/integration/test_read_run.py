"""tables.read_run: one run date's rows at a version; a run date the version lacks is an error
naming the table and the date, whether the read is planned from the Delta log or served from a
frame a stage cached."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import SparkSession

from prescore.config import Settings
from prescore.platform import tables
from prescore.platform.tables import TableNotFoundError

pytestmark = pytest.mark.integration
TABLE = "read_run_events"
DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


@pytest.fixture
def two_days(spark: SparkSession, fresh_settings: Settings) -> Settings:
    """Version 0 holds DAY1 (3 rows), version 1 adds DAY2 (2 rows)."""
    for day, rows in ((DAY1, 3), (DAY2, 2)):
        frame = spark.createDataFrame(
            [(f"k{i}", day) for i in range(rows)], "key string, run_date date"
        )
        tables.replace_run(frame, fresh_settings, TABLE, day)
    return fresh_settings


def test_a_run_date_reads_its_own_rows_at_each_version(
    spark: SparkSession, two_days: Settings
) -> None:
    assert tables.read_run(spark, two_days, TABLE, DAY1, version=0).count() == 3
    assert tables.read_run(spark, two_days, TABLE, DAY2).count() == 2
    assert tables.read_run(spark, two_days, TABLE, DAY1).count() == 3


def test_a_run_date_the_version_lacks_is_named(spark: SparkSession, two_days: Settings) -> None:
    with pytest.raises(TableNotFoundError, match=rf"'{TABLE}' has no rows for run_date {DAY2}"):
        tables.read_run(spark, two_days, TABLE, DAY2, version=0)
    with pytest.raises(TableNotFoundError, match=rf"'{TABLE}' has no rows for run_date 2026-10-31"):
        tables.read_run(spark, two_days, TABLE, date(2026, 10, 31))


def test_a_run_date_is_found_when_a_stage_cached_the_same_read(
    spark: SparkSession, two_days: Settings
) -> None:
    """A cached frame names no files (Spark serves it from memory), so the rows decide."""
    cached = tables.read_run(spark, two_days, TABLE, DAY1, version=0).cache()
    try:
        cached.count()
        again = tables.read_run(spark, two_days, TABLE, DAY1, version=0)
        assert again.inputFiles() == []  # served from the cache: what the check must allow for
        assert again.count() == 3
    finally:
        cached.unpersist()


def test_the_rows_a_write_committed_come_from_its_commit_or_a_count(
    spark: SparkSession, two_days: Settings
) -> None:
    assert tables.last_commit(spark, two_days, TABLE)["operationMetrics"]["numOutputRows"] == "2"
    assert tables.written_rows(spark, two_days, TABLE, DAY2, 1) == 2  # the newest commit's metric
    assert tables.written_rows(spark, two_days, TABLE, DAY1, 0) == 3  # an older one: counted


def test_the_latest_version_is_the_newest_commit_file_of_the_log(
    spark: SparkSession, two_days: Settings
) -> None:
    """latest_version lists the log: the newest N.json, whatever else the log holds (a
    checkpoint, a compacted range), agreeing with Delta's own history."""
    assert tables.latest_version(two_days, TABLE) == 1
    spark.sql(
        f"ALTER TABLE delta.`{two_days.table_path(TABLE)}` "
        "SET TBLPROPERTIES ('delta.checkpointInterval' = '1')"
    )  # version 2, and from now on a checkpoint after every commit
    log_dir = two_days.table_path(TABLE) / "_delta_log"
    (log_dir / f"{0:020d}.{1:020d}.compacted.json").write_text("")
    assert list(log_dir.glob("*.checkpoint.parquet"))
    assert tables.latest_version(two_days, TABLE) == 2
    assert tables.last_commit(spark, two_days, TABLE)["version"] == 2
    with pytest.raises(TableNotFoundError, match="'never_written' not found"):
        tables.latest_version(two_days, "never_written")
