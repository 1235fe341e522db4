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
    # plan is no longer a categorical (its codes, int, become its text) and the derived column
    # becomes a boolean: the same run date again
    categoricals = {c: v for c, v in churn.categorical_features.items() if c != "plan"}
    after = before.model_copy(
        update={
            "categorical_features": categoricals,
            "derive": {"long_tenure": DerivedColumn(sql="tenure_months >= 24", type="boolean")},
        }
    )
    with caplog.at_level(logging.WARNING, logger="prescore.platform.tables"):
        clean.run(RunContext(fresh_settings, after, NEW_DAY, spark))

    table = tables.read(spark, fresh_settings, after.clean_table)
    assert table.schema["plan"].dataType.simpleString() == "string"
    assert table.schema["long_tenure"].dataType.simpleString() == "boolean"
    new = table.where(F.col("run_date") == NEW_DAY)
    assert {r.plan for r in new.select("plan").distinct().collect()} <= {
        "basic",
        "standard",
        "premium",
        None,
    }
    old = table.where(F.col("run_date") == OLD_DAY)  # readable, its codes cast to text
    assert old.count() > 0
    assert {r.plan for r in old.select("plan").distinct().collect()} <= {"0", "1", "2", None}
    assert "plan (int -> string)" in caplog.text and "long_tenure (int -> boolean)" in caplog.text


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
