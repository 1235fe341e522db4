"""A use case's Great Expectations suite: loading it, running it over a frame, its outcomes.

Suites are data: expectations/<name>.json in GX 1.x form (name, expectations of type, kwargs and
GX's own `severity`). A `critical` expectation is a prescore `error`: if it fails the stage fails;
`warning` and `info` are prescore `warn`: recorded, never blocking. Every outcome is a row of
validation_<entity> (catalog.VALIDATION_SCHEMA), one per expectation and run_date.
"""

from __future__ import annotations

import json
import logging
from dataclasses import astuple, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore.catalog import VALIDATION_SCHEMA
from prescore.config import ConfigError, Severity, read_suite

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame, SparkSession

# great_expectations is imported inside the functions that use it: importing it takes
# seconds, which the CLI's other commands, the lookups and the DAG file never pay.
log = logging.getLogger(__name__)

# SUMMARY adds unexpected counts and a sample of unexpected values to BOOLEAN_ONLY's verdict.
# The suite runs with counts only (each sample costs GX two more Spark jobs per expectation);
# the expectations that fail run again for their sample.
COUNTS_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}


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


def failed(outcomes: list[ExpectationOutcome], severity: Severity) -> list[ExpectationOutcome]:
    """The outcomes of one severity that failed, in suite order."""
    return [o for o in outcomes if not o.success and o.severity == severity]


def failed_counts(outcomes: list[ExpectationOutcome]) -> dict[Severity, int]:
    """How many expectations failed, per severity: {"error": n, "warn": m}."""
    return {"error": len(failed(outcomes, "error")), "warn": len(failed(outcomes, "warn"))}


# ---------------------------------------------------------------- suites


def load_suite(path: Path) -> ExpectationSuite:
    """Read a suite file; a malformed file or an unknown expectation fails naming the file.

    GX's ExpectationSuite only logs and skips an expectation it cannot build, so each one is
    built here first and any failure is raised.
    """
    import great_expectations as gx

    data = read_suite(path)
    specs = data["expectations"]
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


def outcomes_of(result: ExpectationSuiteValidationResult) -> list[ExpectationOutcome]:
    """One outcome per expectation of a suite's result, in suite order."""
    return [_outcome(r) for r in result.results]


def data_docs_html(result: ExpectationSuiteValidationResult) -> str:
    """GX's own Data Docs page for one validation result (its CSS and scripts load from CDNs)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return str(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result)))


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
    """The results table's rows: one per expectation and run_date, columns as VALIDATION_SCHEMA."""
    rows = [(run_date, usecase, suite, *astuple(o)) for o in outcomes]
    return spark.createDataFrame(rows, schema=VALIDATION_SCHEMA)
