"""The clean stage on real Spark and Delta: statistics fitted on train, stored, applied to every row."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import CleaningSettings, ImputeRule, OutlierRule, Settings, UseCase
from prescore.context import RunContext
from prescore.data import cleaning
from prescore.demo.datagen import write_landing
from prescore.platform import tables
from prescore.stages import clean, ingest

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 1)


@pytest.fixture(scope="module")
def cleaned(spark: SparkSession, settings: Settings, churn: UseCase, tmp_path_factory):
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("clean_stage")})
    usecase = churn.model_copy(
        update={
            "cleaning": churn.cleaning.model_copy(
                update={
                    "impute": {
                        "data_usage_gb": ImputeRule(strategy="mean"),
                        "plan": ImputeRule(strategy="mode"),
                    },
                    "outliers": {
                        "total_charges": OutlierRule(method="zscore", k=3.0, action="quarantine")
                    },
                    "max_quarantined_fraction": 0.2,
                }
            )
        }
    )
    write_landing(state, usecase, RUN_DATE, rows=600)
    ctx = RunContext(state, usecase, RUN_DATE, spark)
    ingest.run(ctx)
    return ctx, clean.run(ctx)


def test_every_raw_row_is_clean_or_quarantined_with_a_reason(spark, cleaned) -> None:
    ctx, summary = cleaned
    raw = tables.read_run(spark, ctx.settings, ctx.usecase.raw_table, RUN_DATE).count()
    clean_rows = tables.read_run(spark, ctx.settings, ctx.usecase.clean_table, RUN_DATE)
    quarantined = tables.read_run(spark, ctx.settings, ctx.usecase.quarantine_table, RUN_DATE)

    assert clean_rows.count() + quarantined.count() == raw == summary["raw_rows"]
    reasons = [r.reason for r in quarantined.select("reason").collect()]
    assert any("outside fitted zscore bounds" in r for r in reasons)
    assert "split" not in quarantined.first().raw_row  # the raw row only, as it came in


def test_fill_values_come_from_train_rows_and_are_stored(spark, cleaned) -> None:
    ctx, summary = cleaned
    stats = tables.read_run(spark, ctx.settings, ctx.usecase.cleaning_stats_table, RUN_DATE)
    stored = {r.column: r for r in stats.collect()}
    # the fitted mean is that of the train rows that passed the fixed row rules and had a value
    usecase = ctx.usecase
    raw = tables.read_run(spark, ctx.settings, usecase.raw_table, RUN_DATE)
    valid = (
        raw.transform(
            cleaning.flag_invalid_rows, keys=usecase.keys, valid_range=usecase.cleaning.valid_range
        )
        .transform(cleaning.flag_duplicates, keys=usecase.keys, event_time=usecase.event_time)
        .transform(cleaning.assign_split, keys=usecase.keys, split=usecase.split)
        .where(F.col(cleaning.REASON).isNull())
    )
    expected = valid.where(F.col("split") == "train").agg(F.mean("data_usage_gb")).first()[0]
    everything = valid.agg(F.mean("data_usage_gb")).first()[0]

    assert stored["data_usage_gb"].strategy == "mean"
    assert float(stored["data_usage_gb"].value) == pytest.approx(expected)
    assert expected != pytest.approx(everything)  # the test would catch fitting on every row
    assert stored["plan"].strategy == "mode" and stored["plan"].value == "basic"
    assert stored["support_calls"].strategy == "constant"  # fill constants are recorded too
    assert stored["total_charges"].rule == "outliers" and stored["total_charges"].upper > 0
    assert summary["wrote"][ctx.usecase.cleaning_stats_table] == summary["stats_version"]
    assert summary["read"] == {ctx.usecase.raw_table: summary["raw_version"]}


def test_clean_table_keeps_missing_values_and_levels_and_drops_columns(spark, cleaned) -> None:
    """Fills, clips and codes are the model package's: clean holds the values as they came, so
    a model scores a later day with the values it was trained with, not the day's own."""
    ctx, _ = cleaned
    clean_frame = tables.read_run(spark, ctx.settings, ctx.usecase.clean_table, RUN_DATE)
    raw = tables.read_run(spark, ctx.settings, ctx.usecase.raw_table, RUN_DATE)
    kept = raw.join(clean_frame.select("customer_id", "updated_at"), ["customer_id", "updated_at"])

    def nulls(frame):
        columns = ("data_usage_gb", "support_calls", "plan")
        return frame.agg(*[F.count_if(F.col(c).isNull()).alias(c) for c in columns]).first()

    assert nulls(clean_frame) == nulls(kept) and nulls(clean_frame)["data_usage_gb"] > 0
    assert "signup_date" not in clean_frame.columns and "name" not in clean_frame.columns
    plans = {r.plan for r in clean_frame.select("plan").distinct().collect()}
    assert plans - {None} <= {"basic", "standard", "premium"} and len(plans - {None}) == 3


def test_without_event_time_a_duplicate_key_fails_clean_before_any_write(
    spark: SparkSession, settings: Settings, churn: UseCase, tmp_path
) -> None:
    """The demo data holds older copies of some customers: with no event_time to keep the latest,
    the clean stage fails naming them, and writes no clean, quarantine or statistics rows."""
    state = settings.model_copy(update={"state_dir": tmp_path / "state"})
    usecase = churn.model_copy(update={"event_time": None})
    write_landing(state, usecase, RUN_DATE, rows=200)
    ctx = RunContext(state, usecase, RUN_DATE, spark)
    ingest.run(ctx)

    with pytest.raises(cleaning.DuplicateKeyError) as caught:
        clean.run(ctx)

    assert str(caught.value).startswith(
        f"raw_customers run_date {RUN_DATE}: "
    ) and "of ['customer_id'] are held by more than one row" in str(caught.value)
    for table in (usecase.clean_table, usecase.quarantine_table, usecase.cleaning_stats_table):
        assert not state.table_path(table).exists(), table


def test_cleaning_settings_without_fitted_rules_fit_nothing(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [("a", None, "train")], f"id string, {cleaning.REASON} string, split string"
    )
    fitted = cleaning.fit_on_train(frame, cleaning=CleaningSettings(fill={"x": 1}))
    assert fitted == cleaning.FittedCleaning(fill={"x": 1})
