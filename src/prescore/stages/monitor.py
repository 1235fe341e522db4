"""Monitor: after publish, drift and realized performance -> monitoring_<usecase> + report + alert.

For the run date's publish (publish_log says which predictions version and model it served):

- feature drift: the published model's training rows (the clean table at the version and run date
  its MLflow run tagged, train and validation splits) against the clean batch those predictions
  were scored from: PSI per feature, KS per numeric feature (see prescore.monitoring.metrics);
- prediction drift: the published scores against the previous run date's publish (PSI, KS);
- realized performance: an earlier publish's predictions joined with labels that arrived later
  (see `outcomes`): AUC for binary, RMSE / MAE / MAPE for regression; "not measured" until then.

One row per (run date, metric, feature) goes to `monitoring_<usecase>` (replaced per run date:
a rerun never duplicates), with its threshold (`monitoring:` in the use case) and whether it was
crossed. A crossed threshold is alerted through the same webhook as a failed Airflow task; the
stage itself does not fail for drift, since the scores are already published.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore.monitoring import metrics
from prescore.platform import alerts, registry, tables
from prescore.serving import publish_log
from prescore.stages.clean import SPLIT
from prescore.stages.score import SCORE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.config import MonitoringSettings, UseCase
    from prescore.context import RunContext
    from prescore.serving.publish_log import Event

log = logging.getLogger(__name__)
SCHEMA = (
    "usecase string, run_date date, metric string, feature string, value double, "
    "threshold double, breached boolean, reference_rows bigint, current_rows bigint, "
    "compared string, detail string, computed_at timestamp"
)
TRAINING_SPLITS = ("train", "validation")
# Realized metric -> (threshold field in `monitoring:`, True when a value above it is bad).
REALIZED = {
    "auc": ("min_auc", False),
    "rmse": ("max_rmse", True),
    "mae": (None, True),
    "mape": ("max_mape", True),
}


@dataclass(frozen=True)
class Measure:
    """One monitoring row: a metric of one feature (or of the scores), against its threshold."""

    metric: str
    feature: str | None
    value: float | None  # None: not measured (detail says why)
    threshold: float | None
    breached: bool
    reference_rows: int
    current_rows: int
    compared: str
    detail: str = ""


def monitoring_table(usecase: UseCase) -> str:
    return f"monitoring_{usecase.name}"


def judged(
    metric: str,
    feature: str | None,
    value: float | None,
    threshold: float | None,
    *,
    high_is_bad: bool = True,
    **context: object,
) -> Measure:
    """A measure with its verdict: crossed when the value is past the threshold in its bad
    direction; never for an unmeasured value or a metric without a threshold."""
    crossed = value is not None and threshold is not None
    if crossed:
        crossed = value > threshold if high_is_bad else value < threshold  # type: ignore[operator]
    return Measure(metric, feature, value, threshold, bool(crossed), **context)  # type: ignore[arg-type]


# ---------------------------------------------------------------- what was published


def publishes(ctx: RunContext) -> list[Event]:
    """This use case's publishes and backfills (not rollbacks), newest first."""
    events = publish_log.read(ctx.spark, ctx.settings, ctx.usecase)
    return [e for e in reversed(events) if e.action in publish_log.BUILT]


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


# ---------------------------------------------------------------- feature drift


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
    rows = clean.where(F.col(SPLIT).isin(*TRAINING_SPLITS))
    return (
        rows,
        f"{usecase.clean_table} v{version} of {run_date} ({ref.name} v{ref.version} training rows)",
    )


def drift_measures(
    found: metrics.FeatureDrift,
    *,
    psi: tuple[str, float],
    ks: tuple[str, float | None],
    min_rows: int,
    compared: str,
) -> list[Measure]:
    """The PSI (and, numeric, KS) measures of one comparison, each as (metric, threshold);
    under `min_rows` on either side, stored as not measured."""
    few = min(found.reference_rows, found.current_rows) < min_rows
    context = {
        "reference_rows": found.reference_rows,
        "current_rows": found.current_rows,
        "compared": compared,
        "detail": f"not measured: fewer than min_rows {min_rows} rows" if few else "",
    }
    feature = None if found.feature == SCORE else found.feature
    measures = [judged(psi[0], feature, None if few else found.psi, psi[1], **context)]
    if found.kind == "numeric":
        measures.append(judged(ks[0], feature, None if few else found.ks, ks[1], **context))
    return measures


def feature_measures(
    reference: DataFrame, current: DataFrame, *, usecase: UseCase, compared: str
) -> list[Measure]:
    limits = usecase.monitoring
    drift = metrics.feature_drift(
        reference,
        current,
        numeric=usecase.numeric_features,
        categorical=usecase.categorical_features,
        psi_bins=limits.psi_bins,
        ks_bins=limits.ks_bins,
    )
    return [
        measure
        for found in drift
        for measure in drift_measures(
            found,
            psi=("feature_psi", limits.max_feature_psi),
            ks=("feature_ks", limits.max_ks),
            min_rows=limits.min_rows,
            compared=compared,
        )
    ]


# ---------------------------------------------------------------- prediction drift


def prediction_measures(
    ctx: RunContext, current: DataFrame, previous: Event | None
) -> list[Measure]:
    """The published scores against the previous run date's publish: PSI on the previous scores'
    deciles, and KS (stored, no threshold)."""
    limits = ctx.usecase.monitoring
    psi, ks = ("prediction_psi", limits.max_prediction_psi), ("prediction_ks", None)
    if previous is None:
        none: dict[str, Any] = {"reference_rows": 0, "current_rows": 0, "compared": ""}
        note = "not measured: no earlier run date was published"
        return [judged(m, None, None, t, detail=note, **none) for m, t in (psi, ks)]
    found = metrics.feature_drift(
        published_predictions(ctx, previous),
        current,
        numeric=[SCORE],
        categorical={},
        psi_bins=limits.psi_bins,
        ks_bins=limits.ks_bins,
    )[0]
    return drift_measures(
        found, psi=psi, ks=ks, min_rows=limits.min_rows, compared=describe(previous)
    )


# ---------------------------------------------------------------- realized performance


def outcome_window(ctx: RunContext, earlier: list[Event]) -> list[Event]:
    """The earlier publishes whose outcomes the current batch can hold, newest publish per run
    date: the previous run date's (its keys' labels are in today's batch), or, for a time-series
    use case, every run date within the horizon (their target dates may fall in today's batch)."""
    series = ctx.usecase.time_series
    latest: dict[date, Event] = {}
    for entry in earlier:  # newest first: keep the first per run date
        latest.setdefault(entry.run_date, entry)
    dates = sorted(latest, reverse=True)
    if series is None:
        return [latest[d] for d in dates[:1]]
    since = ctx.run_date - timedelta(days=int(series.horizon_days))
    return [latest[d] for d in dates if d >= since]


def outcomes(predictions: DataFrame, labels: DataFrame, *, usecase: UseCase) -> DataFrame:
    """Predictions joined with the labels that arrived later: by key, and for a time-series use
    case also by the day predicted (`target_date`) against the clean rows' date column."""
    from pyspark.sql import functions as F

    series = usecase.time_series
    keys = list(usecase.keys)
    labelled = labels.where(F.col(usecase.label).isNotNull())
    if series is not None:
        labelled = labelled.withColumn("target_date", F.to_date(F.col(series.date_column)))
        keys.append("target_date")
    return predictions.select(*keys, SCORE).join(
        labelled.select(*keys, usecase.label), on=keys, how="inner"
    )


def realized_measures(
    ctx: RunContext, current_clean: DataFrame, earlier: list[Event]
) -> list[Measure]:
    usecase, limits = ctx.usecase, ctx.usecase.monitoring
    names = ("auc",) if usecase.task == "binary" else ("rmse", "mae", "mape")
    window = outcome_window(ctx, earlier)

    def unmeasured(why: str, compared: str = "", rows: int = 0) -> list[Measure]:
        return [
            realized(
                name,
                None,
                limits,
                reference_rows=rows,
                current_rows=rows,
                compared=compared,
                detail=f"not measured: {why}",
            )
            for name in names
        ]

    if not window:
        return unmeasured("no outcomes yet (no earlier run date was published)")
    predictions = published_predictions(ctx, window[0])
    for entry in window[1:]:
        predictions = predictions.unionByName(published_predictions(ctx, entry))
    compared = "; ".join(describe(e) for e in window) + f" with labels of {ctx.run_date}"
    joined = outcomes(predictions, current_clean, usecase=usecase).cache()
    try:
        rows = joined.count()
        if rows < limits.min_rows:
            return unmeasured(f"{rows} labelled rows < min_rows {limits.min_rows}", compared, rows)
        score = {"label": usecase.label, "score": SCORE}
        if usecase.task == "binary":
            values = metrics.binary_outcomes(joined, **score)
        else:
            values = metrics.regression_outcomes(joined, **score)
    finally:
        joined.unpersist()
    if not values:
        return unmeasured("the labels hold one class only", compared, rows)
    return [
        realized(
            name,
            values.get(name),
            limits,
            reference_rows=rows,
            current_rows=rows,
            compared=compared,
        )
        for name in names
    ]


def realized(
    name: str, value: float | None, limits: MonitoringSettings, **context: object
) -> Measure:
    field, high_is_bad = REALIZED[name]
    threshold = getattr(limits, field) if field else None
    return judged(f"realized_{name}", None, value, threshold, high_is_bad=high_is_bad, **context)


# ---------------------------------------------------------------- the stage


def current_publish(ctx: RunContext, events: list[Event]) -> Event:
    found = next((e for e in events if e.run_date == ctx.run_date), None)
    if found is None:
        raise LookupError(
            f"{publish_log.PUBLISH_LOG}: nothing published for {ctx.usecase.name!r} run_date "
            f"{ctx.run_date}: run the publish stage first"
        )
    return found


def measure(ctx: RunContext) -> tuple[list[Measure], dict[str, DataFrame]]:
    """Every measure of the run date's publish, and the frames the report plots."""
    from pyspark.sql import functions as F

    usecase, settings = ctx.usecase, ctx.settings
    events = publishes(ctx)
    entry = current_publish(ctx, events)
    earlier = [e for e in events if e.run_date < ctx.run_date]
    previous = earlier[0] if earlier else None
    predictions = published_predictions(ctx, entry)
    features_version = predictions.select(F.max("features_version")).first()[0]  # type: ignore[index]
    current = tables.read_run(
        ctx.spark, settings, usecase.clean_table, ctx.run_date, features_version
    ).cache()
    try:
        reference, reference_name = training_reference(ctx, entry.model_version)
        batch = f"{usecase.clean_table} v{features_version} of {ctx.run_date}"
        measures = feature_measures(
            reference, current, usecase=usecase, compared=f"{reference_name} vs {batch}"
        )
        measures += prediction_measures(ctx, predictions, previous)
        measures += realized_measures(ctx, current, earlier)
    finally:
        current.unpersist()
    frames = {"predictions": predictions, "reference": reference, "current": current}
    if previous is not None:
        frames["previous"] = published_predictions(ctx, previous)
    return measures, frames


def measures_frame(ctx: RunContext, measures: list[Measure]) -> DataFrame:
    now = datetime.now()
    rows = [
        {"usecase": ctx.usecase.name, "run_date": ctx.run_date, **asdict(m), "computed_at": now}
        for m in measures
    ]
    return ctx.spark.createDataFrame(rows, schema=SCHEMA)


def drift_alert(ctx: RunContext, breaches: list[Measure], report: Path) -> dict[str, object]:
    """What the webhook receives when thresholds were crossed: which metric, feature and value."""
    return {
        "event": "prescore_monitoring_breach",
        "usecase": ctx.usecase.name,
        "run_date": ctx.run_date.isoformat(),
        "breaches": [
            {"metric": m.metric, "feature": m.feature, "value": m.value, "threshold": m.threshold}
            for m in breaches
        ],
        "report": str(report),
        "retrain_on_drift": ctx.usecase.monitoring.retrain_on_drift,
    }


def run(ctx: RunContext) -> dict[str, object]:
    from prescore.monitoring import report as monitor_report

    usecase, settings = ctx.usecase, ctx.settings
    measures, frames = measure(ctx)
    table = monitoring_table(usecase)
    version = tables.replace_run(measures_frame(ctx, measures), settings, table, ctx.run_date)
    history = tables.read(ctx.spark, settings, table).where("metric like 'realized_%'")
    report = monitor_report.publish(ctx, measures, frames, history.collect())
    breaches = [m for m in measures if m.breached]
    alerted = False
    if breaches:
        named = ", ".join(f"{m.metric}({m.feature or 'scores'})={m.value}" for m in breaches)
        log.warning("monitor: %s %s over threshold: %s", usecase.name, ctx.run_date, named)
        alerted = alerts.send(drift_alert(ctx, breaches, report), settings.airflow)
    log.info("monitor: %d measures -> %s v%d, report %s", len(measures), table, version, report)
    return {
        "table": table,
        "version": version,
        "measures": len(measures),
        "breaches": [f"{m.metric}:{m.feature or ''}" for m in breaches],
        "alerted": alerted,
        "report": str(report),
    }
