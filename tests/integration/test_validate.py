"""The validate stage on real Spark, Delta and Great Expectations, with small explicit frames."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from prescore.config import ConfigError, Settings, load_usecase
from prescore.context import RunContext
from prescore.data import validation
from prescore.data.profile import ColumnProfile
from prescore.demo.datagen import write_landing
from prescore.platform import tables
from prescore.stages import validate

pytestmark = pytest.mark.integration

RUN_DATE = date(2024, 3, 1)
RAW_SCHEMA = (
    "customer_id string, tenure_months int, plan string, churned int, "
    "run_date date, _source_file string, _ingested_at timestamp"
)
SUITE: dict[str, Any] = {
    "name": "small_customers",
    "expectations": [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": ["customer_id", "churned"], "exact_match": False},
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "customer_id"},
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "churned", "value_set": [0, 1]},
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "tenure_months", "min_value": 0, "max_value": 600},
            "severity": "warning",
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "plan", "value_set": ["basic", "premium"]},
            "severity": "warning",
        },
    ],
}
GOOD_ROWS = [("C1", 12, "basic", 0), ("C2", 30, "premium", 1), ("C3", 0, "basic", 0)]


def raw_frame(
    spark: SparkSession, rows: list[tuple[Any, ...]], run_date: date = RUN_DATE
) -> DataFrame:
    lineage = (run_date, "part-00000.parquet", datetime(2024, 3, 2, 1, 0))
    return spark.createDataFrame([(*row, *lineage) for row in rows], schema=RAW_SCHEMA)


def make_context(
    spark: SparkSession, settings: Settings, tmp_path: Path, entity: str, run_date: date = RUN_DATE
) -> RunContext:
    """A churn context on its own entity (so its own tables) whose suite is SUITE in tmp_path."""
    (tmp_path / "small_customers.json").write_text(json.dumps(SUITE))
    local = settings.model_copy(update={"expectations_dir": tmp_path})
    usecase = load_usecase("churn", settings).model_copy(
        update={"entity": entity, "expectations": "small_customers"}
    )
    return RunContext(local, usecase, run_date, spark)


def ingest(ctx: RunContext, rows: list[tuple[Any, ...]]) -> None:
    frame = raw_frame(ctx.spark, rows, ctx.run_date)
    tables.replace_run(frame, ctx.settings, ctx.usecase.raw_table, ctx.run_date)


def results(ctx: RunContext) -> list[dict[str, Any]]:
    table = ctx.usecase.validation_table
    frame = tables.read_run(ctx.spark, ctx.settings, table, ctx.run_date)
    return [row.asDict() for row in frame.collect()]


def test_passing_frame_writes_one_row_per_expectation(spark, settings, tmp_path):
    ctx = make_context(spark, settings, tmp_path, "val_pass")
    ingest(ctx, GOOD_ROWS)

    summary = validate.run(ctx)

    rows = results(ctx)
    assert summary["evaluated"] == len(SUITE["expectations"]) == len(rows)
    assert summary["failed_error"] == summary["failed_warn"] == 0
    assert all(r["success"] for r in rows)
    assert sorted(r["expectation_type"] for r in rows) == sorted(
        e["type"] for e in SUITE["expectations"]
    )
    assert sorted(r["severity"] for r in rows) == ["error"] * 3 + ["warn"] * 2
    assert {r["usecase"] for r in rows} == {"churn"}
    assert {r["suite"] for r in rows} == {"small_customers"}


@pytest.mark.parametrize(
    ("bad_row", "expectation", "column"),
    [
        ((None, 5, "basic", 0), "expect_column_values_to_not_be_null", "customer_id"),
        (("C9", 5, "basic", 2), "expect_column_values_to_be_in_set", "churned"),
    ],
    ids=["null_key", "label_out_of_set"],
)
def test_failed_error_expectation_raises_naming_it(
    spark, settings, tmp_path, bad_row, expectation, column
):
    ctx = make_context(spark, settings, tmp_path, f"val_error_{column}")
    ingest(ctx, [*GOOD_ROWS, bad_row])

    with pytest.raises(validation.ValidationFailedError) as caught:
        validate.run(ctx)

    message = str(caught.value)
    assert ctx.usecase.raw_table in message
    assert str(ctx.settings.expectations_dir / "small_customers.json") in message
    assert f"{expectation}({column})" in message
    assert "1 unexpected" in message
    assert [(o.expectation_type, o.column) for o in caught.value.failed] == [(expectation, column)]
    failed = [r for r in results(ctx) if not r["success"]]
    assert [(r["expectation_type"], r["column"], r["severity"]) for r in failed] == [
        (expectation, column, "error")
    ]


def test_failed_warn_expectation_is_recorded_without_raising(spark, settings, tmp_path):
    ctx = make_context(spark, settings, tmp_path, "val_warn")
    ingest(ctx, [*GOOD_ROWS, ("C4", -5, "basic", 1)])

    summary = validate.run(ctx)

    assert (summary["failed_error"], summary["failed_warn"]) == (0, 1)
    failed = [r for r in results(ctx) if not r["success"]]
    assert len(failed) == 1
    assert failed[0]["expectation_type"] == "expect_column_values_to_be_between"
    assert failed[0]["column"] == "tenure_months"
    assert failed[0]["severity"] == "warn"
    assert failed[0]["unexpected_count"] == 1
    assert failed[0]["unexpected_percent"] == pytest.approx(25.0)
    assert json.loads(failed[0]["observed_value"]) == [-5]


def one_expectation(**spec: Any) -> str:
    return json.dumps({"name": "broken", "expectations": [spec]})


NOT_NULL = "expect_column_values_to_not_be_null"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"name": "broken", "expectations": [', "not valid JSON"),
        (one_expectation(type="expect_it_to_rain", kwargs={}), "expect_it_to_rain"),
        (one_expectation(type=NOT_NULL, kwargs={}), "column"),
        (one_expectation(type=NOT_NULL, kwargs={"column": "a"}, severity="fatal"), "fatal"),
        (json.dumps({"name": "broken", "expectations": [], "owner": "me"}), "unknown keys"),
    ],
    ids=["bad_json", "unknown_type", "missing_kwarg", "unknown_severity", "unknown_key"],
)
def test_bad_suite_file_fails_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "broken_suite.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match=reason) as caught:
        validation.load_suite(path)

    assert str(path) in str(caught.value)


def test_bad_suite_fails_the_stage_naming_the_file_and_writes_nothing(spark, settings, tmp_path):
    ctx = make_context(spark, settings, tmp_path, "val_bad_suite")
    ingest(ctx, GOOD_ROWS)
    suite = ctx.settings.expectations_dir / "small_customers.json"
    broken = {**SUITE, "expectations": [*SUITE["expectations"], {"type": "expect_nothing"}]}
    suite.write_text(json.dumps(broken))

    with pytest.raises(ConfigError, match="expect_nothing") as caught:
        validate.run(ctx)  # the suite loads beside the profile: its error still reaches the caller

    assert str(suite) in str(caught.value)
    for table in (ctx.usecase.profile_table, ctx.usecase.validation_table):
        assert not tables.exists(ctx.settings, table)


def test_rerun_same_run_date_replaces_results(spark, settings, tmp_path):
    ctx = make_context(spark, settings, tmp_path, "val_rerun")
    other = make_context(spark, settings, tmp_path, "val_rerun", run_date=date(2024, 3, 2))
    ingest(ctx, GOOD_ROWS)
    ingest(other, GOOD_ROWS)
    validate.run(other)

    validate.run(ctx)
    validate.run(ctx)

    table = tables.read(spark, settings, ctx.usecase.validation_table)
    per_date = {r["run_date"]: r["count"] for r in table.groupBy("run_date").count().collect()}
    expected = len(SUITE["expectations"])
    assert per_date == {ctx.run_date: expected, other.run_date: expected}
    keys = table.select("run_date", "expectation_type", "column", "kwargs")
    assert keys.distinct().count() == keys.count()


def test_shipped_suite_has_no_failed_error_on_demo_data(spark, settings):
    suite = validation.load_suite(settings.expectations_dir / "raw_customers.json")
    landing = write_landing(settings, load_usecase("churn", settings), RUN_DATE, rows=2_000)
    frame = spark.read.parquet(str(landing))

    outcomes = validation.outcomes_of(validation.suite_result(frame, suite))

    assert len(outcomes) == len(suite.expectations)
    assert {o.severity for o in outcomes} == {"error", "warn"}
    assert [o.describe() for o in outcomes if o.severity == "error" and not o.success] == []


def test_profile_history_and_report_are_written_and_logged(spark, settings, tmp_path):
    import mlflow

    from prescore.platform import registry

    first = make_context(spark, settings, tmp_path, "val_profile", run_date=date(2024, 3, 1))
    second = make_context(spark, settings, tmp_path, "val_profile", run_date=date(2024, 3, 2))
    ingest(first, GOOD_ROWS)
    ingest(second, [*GOOD_ROWS, ("C4", None, None, 1)])
    validate.run(first)

    summary = validate.run(second)
    validate.run(second)  # a rerun replaces the date's profile rows

    table = tables.read(spark, settings, second.usecase.profile_table)
    rows = {(r["run_date"], r["column"]): r for r in table.collect()}
    declared = ["customer_id", "tenure_months", "plan", "churned"]
    assert sorted(rows) == sorted(
        (d, c) for d in (first.run_date, second.run_date) for c in declared
    )
    assert rows[(second.run_date, "plan")]["null_rate"] == pytest.approx(0.25)
    assert rows[(first.run_date, "plan")]["null_rate"] == 0.0
    assert json.loads(rows[(second.run_date, "plan")]["top_values"]) == [
        ["basic", 2],
        ["premium", 1],
    ]
    assert summary["read"] == {second.usecase.raw_table: 1}
    assert set(summary["wrote"]) == {"profile_val_profile", "validation_val_profile"}

    report = Path(str(summary["report"]))
    assert report.parent == settings.reports_dir / "churn"
    html = report.read_text()
    assert "Null rate over time" in html
    # What that plot draws: the stored dates before the batch's, and the batch's own profile.
    plan = rows[(second.run_date, "plan")]
    batch = [ColumnProfile(**{f.name: plan[f.name] for f in fields(ColumnProfile)})]
    history = validate.profile_history(
        spark, second.settings, second.usecase, second.run_date, batch
    ).null_rates
    assert history["plan"] == {first.run_date: 0.0, second.run_date: pytest.approx(0.25)}
    assert (
        validate.profile_history(
            spark, first.settings, first.usecase, first.run_date, []
        ).null_rates
        == {}
    )  # nothing stored before the first date
    assert html.count("data:image/png;base64,") == 4
    data_docs = Path(str(summary["data_docs"]))
    assert data_docs.parent == report.parent and data_docs.name == "gx_churn_2024-03-02.html"
    assert "small_customers" in data_docs.read_text()  # GX's page for this suite's result

    registry.client(settings)
    experiment = mlflow.get_experiment_by_name(
        f"{registry.model_name(settings, second.usecase)}-data"
    )
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`prescore.run_date` = '2024-03-02' and tags.`prescore.read.raw_val_profile` = '1'",
        output_format="list",
    )
    assert runs and runs[0].data.metrics["null_rate.plan"] == pytest.approx(0.25)
    artifacts = mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "reports")
    assert [a.path for a in artifacts] == [f"reports/{report.name}"]


def test_failed_suite_still_profiles_and_reports(spark, settings, tmp_path):

    ctx = make_context(spark, settings, tmp_path, "val_fail_report")
    ingest(ctx, [*GOOD_ROWS, (None, 5, "basic", 0)])

    with pytest.raises(validation.ValidationFailedError):
        validate.run(ctx)

    profiled = tables.read_run(spark, settings, ctx.usecase.profile_table, ctx.run_date)
    assert {r["column"]: r["nulls"] for r in profiled.collect()}["customer_id"] == 1
    report = settings.reports_dir / "churn" / f"data_churn_{ctx.run_date}.html"
    assert "expect_column_values_to_not_be_null" in report.read_text()
