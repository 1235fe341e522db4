"""Monitor: after publish, drift and realized performance -> monitoring_<usecase> + report + alert.

For the run date's publish (publish_log says which predictions version and model it served), read
the model's training rows, the clean batch its scores came from, the previous publish and the
earlier publishes whose outcomes have arrived; measure them (monitoring.measures); replace the run
date in `monitoring_<usecase>` (a rerun never duplicates); save the report and log it to MLflow.
A crossed threshold is alerted through the same webhook as a failed Airflow task; the stage
itself does not fail for drift, since the scores are already published.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prescore import catalog
from prescore.monitoring import report
from prescore.monitoring.measures import (
    TRAINING_SPLITS,
    Measure,
    drift_alert,
    feature_measures,
    measure_rows,
    outcome_window,
    outcomes,
    prediction_measures,
    realized_measures,
    realized_names,
    unmeasured,
)
from prescore.platform import alerts, registry, tables
from prescore.platform.files import write_text_atomically
from prescore.platform.imports import imported_meanwhile
from prescore.serving import publish_log

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame, Row

    from prescore.context import RunContext
    from prescore.serving.publish_log import Event

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reads


def published_predictions(ctx: RunContext, entry: Event) -> DataFrame:
    return tables.read_run(
        ctx.spark,
        ctx.settings,
        ctx.usecase.predictions_table,
        entry.run_date,
        entry.predictions_version,
    )


def describe(entry: Event) -> str:
    return f"published run_date {entry.run_date} (predictions v{entry.predictions_version})"


def training_reference(ctx: RunContext, model_version: str) -> tuple[DataFrame, str]:
    """The training rows of a registered version: the clean table at the version and run date its
    MLflow run tagged (train.py's run_tags), train and validation splits."""
    from pyspark.sql import functions as F

    usecase, settings = ctx.usecase, ctx.settings
    ref = registry.model_version(settings, usecase, model_version)
    tags = registry.client(settings).get_run(ref.run_id).data.tags
    if "clean_table_version" not in tags or "run_date" not in tags:
        raise LookupError(
            f"MLflow run {ref.run_id} of {ref.name} v{ref.version} lacks the tags "
            "clean_table_version and run_date: its training data is unknown"
        )
    version, run_date = int(tags["clean_table_version"]), date.fromisoformat(tags["run_date"])
    clean = tables.read_run(ctx.spark, settings, usecase.clean_table, run_date, version)
    rows = clean.where(F.col(catalog.SPLIT).isin(*TRAINING_SPLITS))
    return (
        rows,
        f"{usecase.clean_table} v{version} of {run_date} ({ref.name} v{ref.version} training rows)",
    )


def current_publish(ctx: RunContext, events: list[Event]) -> Event:
    found = next((e for e in events if e.run_date == ctx.run_date), None)
    if found is None:
        raise LookupError(
            f"{catalog.PUBLISH_LOG}: nothing published for {ctx.usecase.name!r} run_date "
            f"{ctx.run_date}: run the publish stage first"
        )
    return found


# ---------------------------------------------------------------- measures


def realized(
    ctx: RunContext,
    current_clean: DataFrame,
    earlier: list[Event],
    predictions_of: Callable[[Event], DataFrame],
) -> list[Measure]:
    """Realized performance of the earlier publishes whose labels arrived in this batch."""
    usecase = ctx.usecase
    series = usecase.time_series
    window = outcome_window(
        earlier,
        run_date=ctx.run_date,
        horizon_days=None if series is None else int(series.horizon_days),
    )
    if not window:
        why = "no outcomes yet (no earlier run date was published)"
        return unmeasured(realized_names(usecase), usecase.monitoring, why)
    predictions = predictions_of(window[0])
    for entry in window[1:]:
        predictions = predictions.unionByName(predictions_of(entry))
    compared = "; ".join(describe(e) for e in window) + f" with labels of {ctx.run_date}"
    joined = outcomes(predictions, current_clean, usecase=usecase).cache()
    try:
        return realized_measures(joined, usecase=usecase, compared=compared)
    finally:
        joined.unpersist()


def measure(ctx: RunContext) -> tuple[list[Measure], dict[str, DataFrame]]:
    """Every measure of the run date's publish, and the frames the report plots."""
    from pyspark.sql import functions as F

    usecase, settings = ctx.usecase, ctx.settings
    # Each publish read once: a read at a past version rebuilds that version's Delta snapshot,
    # and the previous publish is both compared with and, most days, measured against outcomes.
    read: dict[Event, DataFrame] = {}

    def predictions_of(event: Event) -> DataFrame:
        if event not in read:
            read[event] = published_predictions(ctx, event)
        return read[event]

    # The first reads are a fresh process's first waits on Spark: MLflow imports meanwhile.
    with imported_meanwhile("mlflow"):
        events = publish_log.built(publish_log.read(ctx.spark, settings, usecase))[::-1]
        entry = current_publish(ctx, events)
        predictions = predictions_of(entry)
        features_version = predictions.select(F.max("features_version")).first()[0]  # type: ignore[index]
        current = tables.read_run(
            ctx.spark, settings, usecase.clean_table, ctx.run_date, features_version
        ).cache()
    earlier = [e for e in events if e.run_date < ctx.run_date]  # newest first
    previous = earlier[0] if earlier else None

    from prescore.training.pyfunc import load_preprocessing  # imports MLflow

    try:
        reference, reference_name = training_reference(ctx, str(entry.model_version))
        model = registry.model_version(settings, usecase, str(entry.model_version))
        batch = f"{usecase.clean_table} v{features_version} of {ctx.run_date}"
        measures = feature_measures(
            reference,
            current,
            usecase=usecase,
            levels=load_preprocessing(model).levels,
            compared=f"{reference_name} vs {batch}",
        )
        measures += prediction_measures(
            predictions,
            None if previous is None else predictions_of(previous),
            limits=usecase.monitoring,
            compared="" if previous is None else describe(previous),
        )
        measures += realized(ctx, current, earlier, predictions_of)
    finally:
        current.unpersist()
    frames = {"predictions": predictions, "reference": reference, "current": current}
    if previous is not None:
        frames["previous"] = predictions_of(previous)
    return measures, frames


# ---------------------------------------------------------------- writes


def write_report(
    ctx: RunContext, measures: list[Measure], frames: dict[str, DataFrame], history: list[Row]
) -> Path:
    """Render the monitoring report, save it under reports/<usecase>/, log it to MLflow."""
    usecase = ctx.usecase
    path = catalog.monitoring_report_path(ctx.settings.reports_dir, usecase.name, ctx.run_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_page = report.evidently_page(
        usecase, frames, path.with_name(f"{path.stem}_evidently.html")
    )
    html = report.render(
        title=f"{usecase.name}: monitoring of run_date {ctx.run_date}",
        measures=measures,
        figures=report.figures(measures, frames, history, ctx.run_date),
        evidently=sample_page.name if sample_page else None,
    )
    write_text_atomically(path, html)
    log_monitoring_run(ctx, measures, [p for p in (path, sample_page) if p])
    return path


def log_monitoring_run(ctx: RunContext, measures: list[Measure], files: list[Path]) -> None:
    """One MLflow run per monitored run date, in `<registered model>-monitoring`: every measured
    value as a metric, the report as an artifact."""
    import mlflow  # here, not at the top: importing mlflow costs seconds

    experiment = registry.monitoring_experiment_id(ctx.settings, ctx.usecase)
    metrics = {
        f"{m.metric}.{m.feature}" if m.feature else m.metric: m.value
        for m in measures
        if m.value is not None
    }
    tags = {"prescore.stage": "monitor", "prescore.run_date": ctx.run_date.isoformat()}
    with mlflow.start_run(experiment_id=experiment, run_name=f"monitor {ctx.run_date}", tags=tags):
        mlflow.log_metrics(metrics)
        mlflow.log_metric("breaches", float(sum(m.breached for m in measures)))
        for file in files:
            mlflow.log_text(file.read_text(encoding="utf-8"), f"reports/{file.name}")


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    measures, frames = measure(ctx)
    table = usecase.monitoring_table
    rows = measure_rows(
        measures, usecase=usecase.name, run_date=ctx.run_date, computed_at=datetime.now()
    )
    frame = ctx.spark.createDataFrame(rows, schema=catalog.MONITORING_SCHEMA)
    # The report's libraries import while Spark writes the measures and reads their history.
    with imported_meanwhile(*report.SLOW_IMPORTS, "mlflow"):
        version = tables.replace_run(frame, settings, table, ctx.run_date)
        history = tables.read(ctx.spark, settings, table).where("metric like 'realized_%'")
        realized = history.collect()
    path = write_report(ctx, measures, frames, realized)
    breaches = [m for m in measures if m.breached]
    alerted = False
    if breaches:
        named = ", ".join(f"{m.metric}({m.feature or 'scores'})={m.value}" for m in breaches)
        log.warning("monitor: %s %s over threshold: %s", usecase.name, ctx.run_date, named)
        payload = drift_alert(breaches, usecase=usecase, run_date=ctx.run_date, report=path)
        alerted = alerts.send(payload, settings.airflow)
    log.info("monitor: %d measures -> %s v%d, report %s", len(measures), table, version, path)
    return {
        "table": table,
        "version": version,
        "measures": len(measures),
        "breaches": [f"{m.metric}:{m.feature or ''}" for m in breaches],
        "alerted": alerted,
        "report": str(path),
    }
