"""Validate stage: profile and run the use case's suite over one run_date of its raw table.

Reads raw_<entity> (one run_date, cached once for the profile's passes and the suite); writes
profile_<entity> (one row per column), validation_<entity> (one row per expectation), the HTML
data report and GX's Data Docs page under reports/, and one run in the use case's MLflow data
experiment. A failed `error` expectation fails the stage after all of that is written.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from prescore import catalog
from prescore.config import suite_path
from prescore.data.profile import (
    ColumnProfile,
    ProfileHistory,
    ProfilePlan,
    compute_profile,
    profile_frame,
)
from prescore.data.report import render_report
from prescore.data.validation import (
    ExpectationOutcome,
    ValidationFailedError,
    data_docs_html,
    failed,
    failed_counts,
    load_suite,
    outcomes_frame,
    outcomes_of,
    suite_result,
)
from prescore.platform import registry, tables
from prescore.platform.files import write_text_atomically
from prescore.platform.imports import imported_meanwhile

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from prescore.config import Settings, UseCase
    from prescore.context import RunContext

__all__ = ["ValidationFailedError", "run"]
log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict[str, object]:
    """Profile and validate the raw table's run_date partition; fail on a failed `error`."""
    usecase, settings, run_date = ctx.usecase, ctx.settings, ctx.run_date
    source, path = usecase.raw_table, suite_path(usecase, settings)
    raw_version = tables.latest_version(settings, source)
    # Finding the partition is a fresh process's first and longest wait on Spark: Great
    # Expectations and MLflow import meanwhile. Not during the profile: its many short Spark calls
    # would each queue for the interpreter behind the imports, which made the stage slower.
    with imported_meanwhile("great_expectations", "mlflow"):
        raw = tables.read_run(ctx.spark, settings, source, run_date, raw_version).cache()
    try:
        plan = ProfilePlan.for_usecase(usecase, raw.columns)
        profiles = compute_profile(raw, plan=plan)
        suite = load_suite(path)  # a bad suite fails here, before anything is written
        result = suite_result(raw, suite)
    finally:
        raw.unpersist()
    outcomes = outcomes_of(result)
    data_docs = write_text_atomically(
        catalog.data_docs_path(settings.reports_dir, usecase.name, run_date),
        data_docs_html(result),
    )
    title = f"{usecase.name}: {source} run_date {run_date} (v{raw_version})"

    def draw_report() -> str:
        history = profile_history(ctx.spark, settings, usecase, run_date, profiles)
        return render_report(title=title, profiles=profiles, outcomes=outcomes, history=history)

    # The report's history is read and the report drawn while the Delta writes run: the writes
    # replace this run_date only, and the history is of the earlier ones.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-report") as drawing:
        page = drawing.submit(draw_report)
        written = write_profile_and_results(ctx, profiles, outcomes, suite.name)
        report = write_text_atomically(
            catalog.data_report_path(settings.reports_dir, usecase.name, run_date), page.result()
        )
    log_data_run(
        settings,
        usecase,
        run_date,
        report,
        profiles,
        outcomes,
        read={source: raw_version},
        wrote=written,
    )
    failed_error, failed_warn = failed(outcomes, "error"), failed(outcomes, "warn")
    log.log(
        logging.WARNING if failed_error or failed_warn else logging.INFO,
        "validate %s run_date=%s suite=%s: %d expectations, %d failed error, %d failed warn%s",
        source,
        run_date,
        suite.name,
        len(outcomes),
        len(failed_error),
        len(failed_warn),
        "".join(f"; warn {o.expectation_type}({o.column or ''})" for o in failed_warn),
    )
    if failed_error:
        details = "; ".join(o.describe() for o in failed_error)
        message = f"{source} run_date={run_date} failed suite {suite.name} ({path}): "
        raise ValidationFailedError(message + details, failed_error)
    return {
        "evaluated": len(outcomes),
        "failed_error": len(failed_error),
        "failed_warn": len(failed_warn),
        "rows": profiles[0].rows if profiles else 0,
        "results_version": written[usecase.validation_table],
        "profile_version": written[usecase.profile_table],
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
    return tables.replace_runs(
        {usecase.profile_table: profile, usecase.validation_table: results},
        ctx.settings,
        run_date,
    )


def profile_history(
    spark: SparkSession,
    settings: Settings,
    usecase: UseCase,
    run_date: date,
    profiles: list[ColumnProfile],
) -> ProfileHistory:
    """Null rate per column of every profiled run_date before this one (small: columns x dates),
    and this batch's `profiles` for run_date."""
    from pyspark.sql import functions as F

    rows = []
    if tables.exists(settings, usecase.profile_table):
        table = tables.read(spark, settings, usecase.profile_table)
        earlier = table.where(F.col(catalog.RUN_DATE) < F.lit(run_date))
        rows = [tuple(r) for r in earlier.select(catalog.RUN_DATE, "column", "null_rate").collect()]
    batch = [(run_date, p.column, p.null_rate) for p in profiles]
    return ProfileHistory.from_rows([*rows, *batch])


def log_data_run(
    settings: Settings,
    usecase: UseCase,
    run_date: date,
    report: Path,
    profiles: list[ColumnProfile],
    outcomes: list[ExpectationOutcome],
    *,
    read: dict[str, int],
    wrote: dict[str, int],
) -> None:
    """One MLflow run per validated run_date: the report, row and null counts, table versions."""
    import mlflow  # here, not at the top: importing mlflow costs seconds

    tags = {
        "prescore.stage": "validate",
        "prescore.run_date": run_date.isoformat(),
        **{f"prescore.read.{t}": str(v) for t, v in read.items()},
        **{f"prescore.wrote.{t}": str(v) for t, v in wrote.items()},
    }
    metrics = {f"null_rate.{p.column}": p.null_rate for p in profiles}
    metrics["rows"] = float(profiles[0].rows if profiles else 0)
    metrics |= {f"failed_{severity}": float(n) for severity, n in failed_counts(outcomes).items()}
    experiment = registry.data_experiment_id(settings, usecase)
    with mlflow.start_run(experiment_id=experiment, run_name=f"data {run_date}", tags=tags):
        mlflow.log_metrics(metrics)
        mlflow.log_text(report.read_text(encoding="utf-8"), f"reports/{report.name}")
