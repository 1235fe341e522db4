"""Validate stage: run the use case's Great Expectations suite over one run_date of its raw table.

Suites are data: expectations/<name>.json in GX 1.x form (name, expectations of type, kwargs and
GX's own `severity`). A `critical` expectation is a prescore `error`: if it fails the stage fails;
`warning` and `info` are prescore `warn`: recorded, never blocking. Every outcome is written to
validation_<entity>, one row per expectation, replaced per run_date.
"""

from __future__ import annotations

import json
import logging
from dataclasses import astuple, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore.config import ConfigError, Severity, UseCase
from prescore.data.profile import (
    ColumnProfile,
    ProfileHistory,
    ProfilePlan,
    compute_profile,
    profile_frame,
    profile_table,
)
from prescore.platform import tables

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame, SparkSession

    from prescore.context import RunContext

log = logging.getLogger(__name__)

SUITE_KEYS = frozenset({"name", "expectations", "notes", "meta"})
# SUMMARY adds unexpected counts and a sample of unexpected values to BOOLEAN_ONLY's verdict.
# The suite runs with counts only (each sample costs GX two more Spark jobs per expectation);
# the expectations that fail run again for their sample.
COUNTS_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
RESULTS_SCHEMA = (
    "run_date date, usecase string, suite string, expectation_type string, column string, "
    "kwargs string, severity string, success boolean, unexpected_count long, "
    "unexpected_percent double, observed_value string"
)


class ValidationFailedError(RuntimeError):
    """At least one `error` expectation failed; `failed` holds those outcomes."""

    def __init__(self, message: str, failed: list[ExpectationOutcome]) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass(frozen=True)
class ExpectationOutcome:
    """The verdict of one expectation on one frame, flattened for a results table."""

    expectation_type: str
    column: str | None
    kwargs: str  # JSON, so that two expectations of one type on one column stay apart
    severity: Severity
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: str | None  # JSON: GX's observed_value, or a sample of unexpected values

    def describe(self) -> str:
        """One line for logs and errors: type(column), observed value, unexpected count."""
        where = f"({self.column})" if self.column else ""
        text = f"{self.expectation_type}{where}: observed {self.observed_value}"
        if self.unexpected_count is not None:
            text += f", {self.unexpected_count} unexpected ({self.unexpected_percent or 0:.2f}%)"
        return text


def results_table(usecase: UseCase) -> str:
    """The Delta table of validation outcomes (a UseCase property would be its natural home)."""
    return f"validation_{usecase.entity}"


# ---------------------------------------------------------------- suites


def load_suite(path: Path) -> ExpectationSuite:
    """Read a suite file; a malformed file or an unknown expectation fails naming the file.

    GX's ExpectationSuite only logs and skips an expectation it cannot build, so each one is
    built here first and any failure is raised.
    """
    import great_expectations as gx

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: expectation suite not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{path}: expected an object with a string 'name'")
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (allowed: {sorted(SUITE_KEYS)})")
    specs = data.get("expectations")
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"{path}: 'expectations' must be a non-empty list")
    expectations = [_build_expectation(spec, path, index) for index, spec in enumerate(specs)]
    return gx.ExpectationSuite(
        name=data["name"], expectations=expectations, notes=data.get("notes"), meta=data.get("meta")
    )


def _build_expectation(spec: Any, path: Path, index: int) -> Expectation:
    from great_expectations.exceptions import GreatExpectationsError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expectation #{index}: expected an object, got {spec!r}")
    try:
        return ExpectationConfiguration(**spec).to_domain_obj()
    except (TypeError, ValueError, GreatExpectationsError) as exc:
        label = spec.get("type", "no type")
        raise ConfigError(f"{path}: expectation #{index} ({label}): {exc}") from exc


# ---------------------------------------------------------------- validation


def validate_frame(df: DataFrame, suite: ExpectationSuite) -> list[ExpectationOutcome]:
    """Run `suite` over the whole of `df` in an in-memory GX context; one outcome per expectation."""
    return [_outcome(r) for r in suite_result(df, suite).results]


def suite_result(df: DataFrame, suite: ExpectationSuite) -> ExpectationSuiteValidationResult:
    """GX's result of `suite` over the whole of `df` (SUMMARY format).

    Any grain and columns in. The frame is cached for the suite's many metric queries (unless the
    caller cached it already) and released afterwards. The whole suite runs with unexpected counts
    only; each failed expectation with unexpected values runs again alone for a sample of them.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # persist=False: GX would persist the frame and never release it; the cache is ours.
    source = context.data_sources.add_spark(name="prescore", persist=False)
    asset = source.add_dataframe_asset(name="frame")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
    owns_cache = not df.is_cached
    if owns_cache:
        df.cache()
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format=COUNTS_FORMAT)
        for index, outcome in enumerate(result.results):
            if not outcome.success and (outcome.result or {}).get("unexpected_count"):
                config = outcome.expectation_config
                assert config is not None  # GX sets it on every result of a suite run
                sampled = batch.validate(config.to_domain_obj(), result_format=RESULT_FORMAT)
                result.results[index] = sampled
        return result
    finally:
        if owns_cache:
            df.unpersist()


def write_data_docs(result: ExpectationSuiteValidationResult, path: Path) -> Path:
    """GX's own Data Docs page for one validation result (its CSS and scripts load from CDNs)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".html.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path


def _outcome(result: ExpectationValidationResult) -> ExpectationOutcome:
    from great_expectations.expectations.metadata_types import FailureSeverity

    config = result.expectation_config
    assert config is not None  # GX sets it on every result of a suite run
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    details = result.result or {}
    percent = details.get("unexpected_percent")
    return ExpectationOutcome(
        expectation_type=config.type,
        column=_column(kwargs),
        kwargs=json.dumps(kwargs, sort_keys=True, default=str),
        severity="error" if config.severity == FailureSeverity.CRITICAL else "warn",
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=None if percent is None else float(percent),
        observed_value=_observed(result),
    )


def _column(kwargs: dict[str, Any]) -> str | None:
    """The column an expectation is about; multi-column ones join their names with commas."""
    if kwargs.get("column"):
        return str(kwargs["column"])
    names = kwargs.get("column_list") or [kwargs.get("column_A"), kwargs.get("column_B")]
    return ",".join(str(n) for n in names if n) or None


def _observed(result: ExpectationValidationResult) -> str | None:
    """GX's observed value, else the sample of unexpected values, else the exception raised."""
    details = result.result or {}
    if "observed_value" in details:
        return json.dumps(details["observed_value"], default=str)
    if "partial_unexpected_list" in details:
        return json.dumps(details["partial_unexpected_list"], default=str)
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return json.dumps(f"exception: {info.get('exception_message')}")
    return None


def outcomes_frame(
    spark: SparkSession,
    outcomes: list[ExpectationOutcome],
    *,
    run_date: date,
    usecase: str,
    suite: str,
) -> DataFrame:
    """The results table's rows: one per expectation and run_date, columns as RESULTS_SCHEMA."""
    rows = [(run_date, usecase, suite, *astuple(o)) for o in outcomes]
    return spark.createDataFrame(rows, schema=RESULTS_SCHEMA)


# ---------------------------------------------------------------- stage


def run(ctx: RunContext) -> dict[str, object]:
    """Profile and validate the raw table's run_date partition; fail on a failed `error`.

    Reads raw_<entity> (one run_date, cached once for the profile's two passes and the suite);
    writes profile_<entity> (one row per column), validation_<entity> (one row per expectation)
    and the HTML data report under reports/, logged to the use case's MLflow data experiment.
    """
    suite_path = ctx.settings.expectations_dir / f"{ctx.usecase.expectations}.json"
    suite = load_suite(suite_path)  # before any Spark work: a bad suite fails fast
    source = ctx.usecase.raw_table
    raw_version = tables.latest_version(ctx.spark, ctx.settings, source)
    raw = tables.read_run(ctx.spark, ctx.settings, source, ctx.run_date, raw_version).cache()
    try:
        plan = ProfilePlan.for_usecase(ctx.usecase, raw.columns)
        profiles = compute_profile(raw, plan=plan)
        result = suite_result(raw, suite)
    finally:
        raw.unpersist()
    outcomes = [_outcome(r) for r in result.results]
    reports = ctx.settings.reports_dir / ctx.usecase.name
    data_docs = write_data_docs(result, reports / f"gx_{ctx.usecase.name}_{ctx.run_date}.html")
    written = write_profile_and_results(ctx, profiles, outcomes, suite.name)
    report = publish_report(ctx, profiles, outcomes, raw_version=raw_version, written=written)
    failed_error = [o for o in outcomes if not o.success and o.severity == "error"]
    failed_warn = [o for o in outcomes if not o.success and o.severity == "warn"]
    log.log(
        logging.WARNING if failed_error or failed_warn else logging.INFO,
        "validate %s run_date=%s suite=%s: %d expectations, %d failed error, %d failed warn%s",
        source,
        ctx.run_date,
        suite.name,
        len(outcomes),
        len(failed_error),
        len(failed_warn),
        "".join(f"; warn {o.expectation_type}({o.column or ''})" for o in failed_warn),
    )
    if failed_error:
        details = "; ".join(o.describe() for o in failed_error)
        message = f"{source} run_date={ctx.run_date} failed suite {suite.name} ({suite_path}): "
        raise ValidationFailedError(message + details, failed_error)
    return {
        "evaluated": len(outcomes),
        "failed_error": len(failed_error),
        "failed_warn": len(failed_warn),
        "rows": profiles[0].rows if profiles else 0,
        "results_version": written[results_table(ctx.usecase)],
        "profile_version": written[profile_table(ctx.usecase)],
        "report": str(report),
        "data_docs": str(data_docs),
        "read": {source: raw_version},
        "wrote": written,
    }


def write_profile_and_results(
    ctx: RunContext, profiles: list[ColumnProfile], outcomes: list[ExpectationOutcome], suite: str
) -> dict[str, int]:
    """Replace the run_date in profile_<entity> and validation_<entity>; their new versions."""
    usecase, run_date = ctx.usecase, ctx.run_date
    profile = profile_frame(ctx.spark, profiles, run_date=run_date, usecase=usecase.name)
    results = outcomes_frame(
        ctx.spark, outcomes, run_date=run_date, usecase=usecase.name, suite=suite
    )
    return {
        profile_table(usecase): tables.replace_run(
            profile, ctx.settings, profile_table(usecase), run_date
        ),
        results_table(usecase): tables.replace_run(
            results, ctx.settings, results_table(usecase), run_date
        ),
    }


def profile_history(ctx: RunContext) -> ProfileHistory:
    """Null rate per column of every profiled run_date up to this one (small: columns x dates)."""
    from pyspark.sql import functions as F

    table = tables.read(ctx.spark, ctx.settings, profile_table(ctx.usecase))
    rows = (
        table.where(F.col(tables.RUN_DATE) <= F.lit(ctx.run_date))
        .select(tables.RUN_DATE, "column", "null_rate")
        .collect()
    )
    return ProfileHistory.from_rows([(r[0], r[1], r[2]) for r in rows])


def publish_report(
    ctx: RunContext,
    profiles: list[ColumnProfile],
    outcomes: list[ExpectationOutcome],
    *,
    raw_version: int,
    written: dict[str, int],
) -> Path:
    """Render the data report, save it under reports/<usecase>/ and log it to MLflow."""
    from prescore.data.report import render_report, report_path, write_report

    title = f"{ctx.usecase.name}: {ctx.usecase.raw_table} run_date {ctx.run_date} (v{raw_version})"
    html = render_report(
        title=title, profiles=profiles, outcomes=outcomes, history=profile_history(ctx)
    )
    path = write_report(html, report_path(ctx.settings.reports_dir, ctx.usecase.name, ctx.run_date))
    log_data_run(
        ctx, path, profiles, outcomes, read={ctx.usecase.raw_table: raw_version}, wrote=written
    )
    return path


def data_experiment(ctx: RunContext) -> str:
    """The use case's data experiment (`<registered model>-data`), created when new."""
    import mlflow

    from prescore.platform import registry

    registry.client(ctx.settings)
    name = f"{registry.model_name(ctx.settings, ctx.usecase)}-data"
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    artifacts = ctx.settings.mlflow_artifacts_dir
    location = artifacts.as_uri() if not ctx.settings.mlflow.tracking_uri else None
    return str(mlflow.create_experiment(name, artifact_location=location))


def log_data_run(
    ctx: RunContext,
    report: Path,
    profiles: list[ColumnProfile],
    outcomes: list[ExpectationOutcome],
    *,
    read: dict[str, int],
    wrote: dict[str, int],
) -> None:
    """One MLflow run per validated run_date: the report, row and null counts, table versions."""
    import mlflow

    tags = {
        "prescore.stage": "validate",
        "prescore.run_date": ctx.run_date.isoformat(),
        **{f"prescore.read.{t}": str(v) for t, v in read.items()},
        **{f"prescore.wrote.{t}": str(v) for t, v in wrote.items()},
    }
    metrics = {f"null_rate.{p.column}": p.null_rate for p in profiles}
    metrics["rows"] = float(profiles[0].rows if profiles else 0)
    metrics["failed_error"] = float(sum(not o.success and o.severity == "error" for o in outcomes))
    metrics["failed_warn"] = float(sum(not o.success and o.severity == "warn" for o in outcomes))
    with mlflow.start_run(
        experiment_id=data_experiment(ctx), run_name=f"data {ctx.run_date}", tags=tags
    ):
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report), artifact_path="reports")
