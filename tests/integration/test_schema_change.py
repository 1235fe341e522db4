"""A use case whose features or derived columns change: rerunning clean replaces the run date with
the new schema, and the older run dates stay readable."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prescore.config import DerivedColumn, Settings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.platform import tables
from prescore.stages import clean, ingest

pytestmark = pytest.mark.integration
OLD_DAY, NEW_DAY = date(2026, 11, 1), date(2026, 11, 2)


def test_a_changed_feature_type_rewrites_clean_and_keeps_older_dates(
    spark: SparkSession,
    fresh_settings: Settings,
    churn: UseCase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = churn.model_copy(
        update={"derive": {"long_tenure": DerivedColumn(sql="tenure_months >= 24", type="int")}}
    )
    for day in (OLD_DAY, NEW_DAY):
        write_landing(fresh_settings, before, day, rows=60)
        ctx = RunContext(fresh_settings, before, day, spark)
        ingest.run(ctx)
        clean.run(ctx)
    # the derived column becomes a boolean: the same run date again
    after = before.model_copy(
        update={"derive": {"long_tenure": DerivedColumn(sql="tenure_months >= 24", type="boolean")}}
    )
    with caplog.at_level(logging.WARNING, logger="prescore.platform.tables"):
        clean.run(RunContext(fresh_settings, after, NEW_DAY, spark))

    table = tables.read(spark, fresh_settings, after.clean_table)
    assert table.schema["long_tenure"].dataType.simpleString() == "boolean"
    new = table.where(F.col("run_date") == NEW_DAY)
    recomputed = F.col("tenure_months") >= 24
    assert new.where(~F.col("long_tenure").eqNullSafe(recomputed)).count() == 0
    old = table.where(F.col("run_date") == OLD_DAY)  # readable, its 0/1 cast to false/true
    assert old.count() > 0
    assert {r.long_tenure for r in old.select("long_tenure").distinct().collect()} <= {
        True,
        False,
    }
    assert "long_tenure (int -> boolean)" in caplog.text


def _frame(spark: SparkSession, day: date, value: object, ddl: str) -> DataFrame:
    return spark.createDataFrame([(day, "k", value)], f"run_date date, key string, {ddl}")


def test_an_added_column_is_null_in_older_run_dates(
    spark: SparkSession, fresh_settings: Settings
) -> None:
    tables.replace_run(_frame(spark, OLD_DAY, 1, "x int"), fresh_settings, "t", OLD_DAY)
    wider = _frame(spark, NEW_DAY, 2, "x int").withColumn("y", F.lit("new"))
    tables.replace_run(wider, fresh_settings, "t", NEW_DAY)
    rows = {r.run_date: (r.x, r.y) for r in tables.read(spark, fresh_settings, "t").collect()}
    assert rows == {OLD_DAY: (1, None), NEW_DAY: (2, "new")}


def test_a_retyped_column_is_refused_where_older_rows_are_never_rewritten(
    spark: SparkSession, fresh_settings: Settings
) -> None:
    tables.replace_run(_frame(spark, OLD_DAY, 1, "x int"), fresh_settings, "raw_t", OLD_DAY)
    with pytest.raises(
        tables.SchemaChangeError, match=r"raw_t: columns changed type: x \(int -> string\)"
    ):
        tables.replace_run(
            _frame(spark, NEW_DAY, "a", "x string"),
            fresh_settings,
            "raw_t",
            NEW_DAY,
            rewrite_older=False,
        )
    assert tables.read(spark, fresh_settings, "raw_t").schema["x"].dataType.simpleString() == "int"
