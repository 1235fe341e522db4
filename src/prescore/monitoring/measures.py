"""Monitoring measures: one row per (run date, metric, feature) against its threshold, judged.

Feature drift compares a model's training rows with the batch its scores were computed from (PSI
per feature, KS per numeric feature, see metrics); prediction drift compares the published
scores with the previous run date's; realized performance joins an earlier publish's predictions
with the labels that arrived later (`outcome_window`, `outcomes`). A measure under `min_rows` or
without data is stored as not measured, with the reason in `detail`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prescore.catalog import SCORE, TARGET_DATE
from prescore.monitoring import metrics

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.config import MonitoringSettings, UseCase

TRAINING_SPLITS = ("train", "validation")
UNSEEN_LEVELS = "unseen_levels"  # a categorical's values outside its model's levels, per batch
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


# ---------------------------------------------------------------- feature drift


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
    if found.unseen is not None:  # counted on every batch: the model scores them as missing
        unseen = {**context, "detail": "values outside the model's levels, scored as missing"}
        measures.append(judged(UNSEEN_LEVELS, feature, float(found.unseen), None, **unseen))
    return measures


def feature_measures(
    reference: DataFrame,
    current: DataFrame,
    *,
    usecase: UseCase,
    levels: dict[str, list[str]],
    compared: str,
) -> list[Measure]:
    """PSI and KS of every source feature, the training rows against the batch, and the unseen
    values of each categorical; `levels` are the model version's (declared or learned)."""
    limits = usecase.monitoring
    drift = metrics.feature_drift(
        reference,
        current,
        numeric=usecase.numeric_features,
        categorical={c: levels[c] for c in usecase.categorical_features},
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
    current: DataFrame, previous: DataFrame | None, *, limits: MonitoringSettings, compared: str
) -> list[Measure]:
    """The published scores against the previous run date's publish (`previous`, None before
    the second publish): PSI on the previous scores' deciles, and KS (stored, no threshold)."""
    psi, ks = ("prediction_psi", limits.max_prediction_psi), ("prediction_ks", None)
    if previous is None:
        none: dict[str, Any] = {"reference_rows": 0, "current_rows": 0, "compared": ""}
        note = "not measured: no earlier run date was published"
        return [judged(m, None, None, t, detail=note, **none) for m, t in (psi, ks)]
    found = metrics.feature_drift(
        previous,
        current,
        numeric=[SCORE],
        categorical={},
        psi_bins=limits.psi_bins,
        ks_bins=limits.ks_bins,
    )[0]
    return drift_measures(found, psi=psi, ks=ks, min_rows=limits.min_rows, compared=compared)


# ---------------------------------------------------------------- realized performance


class Published(Protocol):
    """What outcome_window needs of a publish (a publish_log.Event)."""

    @property
    def run_date(self) -> date: ...


P = TypeVar("P", bound=Published)


def outcome_window(earlier: Sequence[P], *, run_date: date, horizon_days: int | None) -> list[P]:
    """The earlier publishes (newest first) whose outcomes the run date's batch can hold, newest
    publish per run date: the previous run date's (its keys' labels are in today's batch), or,
    for a time-series use case (`horizon_days` set), every run date within the horizon (their
    target dates may fall in today's batch)."""
    latest: dict[date, P] = {}
    for entry in earlier:  # newest first: keep the first per run date
        latest.setdefault(entry.run_date, entry)
    dates = sorted(latest, reverse=True)
    if horizon_days is None:
        return [latest[d] for d in dates[:1]]
    since = run_date - timedelta(days=int(horizon_days))
    return [latest[d] for d in dates if d >= since]


def outcomes(predictions: DataFrame, labels: DataFrame, *, usecase: UseCase) -> DataFrame:
    """Predictions joined with the labels that arrived later: by key, and for a time-series use
    case also by the day predicted (`target_date`) against the clean rows' date column."""
    from pyspark.sql import functions as F

    series = usecase.time_series
    keys = list(usecase.keys)
    labelled = labels.where(F.col(usecase.label).isNotNull())
    if series is not None:
        labelled = labelled.withColumn(TARGET_DATE, F.to_date(F.col(series.date_column)))
        keys.append(TARGET_DATE)
    return predictions.select(*keys, SCORE).join(
        labelled.select(*keys, usecase.label), on=keys, how="inner"
    )


def unmeasured(
    names: Sequence[str], limits: MonitoringSettings, why: str, compared: str = "", rows: int = 0
) -> list[Measure]:
    """The realized measures of `names`, not measured, saying why."""
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


def realized_names(usecase: UseCase) -> tuple[str, ...]:
    return ("auc",) if usecase.task == "binary" else ("rmse", "mae", "mape")


def realized_measures(joined: DataFrame, *, usecase: UseCase, compared: str) -> list[Measure]:
    """Realized performance of predictions joined with their labels (`outcomes`): AUC for
    binary, RMSE / MAE / MAPE for regression; under min_rows labelled rows, not measured."""
    limits, names = usecase.monitoring, realized_names(usecase)
    rows = joined.count()
    if rows < limits.min_rows:
        why = f"{rows} labelled rows < min_rows {limits.min_rows}"
        return unmeasured(names, limits, why, compared, rows)
    score = {"label": usecase.label, "score": SCORE}
    if usecase.task == "binary":
        values = metrics.binary_outcomes(joined, **score)
    else:
        values = metrics.regression_outcomes(joined, **score)
    if not values:
        return unmeasured(names, limits, "the labels hold one class only", compared, rows)
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


# ---------------------------------------------------------------- rows and alert


def measure_rows(
    measures: list[Measure], *, usecase: str, run_date: date, computed_at: datetime
) -> list[dict[str, object]]:
    """The monitoring table's rows (catalog.MONITORING_SCHEMA), one per measure."""
    return [
        {"usecase": usecase, "run_date": run_date, **asdict(m), "computed_at": computed_at}
        for m in measures
    ]


def drift_alert(
    breaches: list[Measure], *, usecase: UseCase, run_date: date, report: Path
) -> dict[str, object]:
    """What the webhook receives when thresholds were crossed: which metric, feature and value."""
    return {
        "event": "prescore_monitoring_breach",
        "usecase": usecase.name,
        "run_date": run_date.isoformat(),
        "breaches": [
            {"metric": m.metric, "feature": m.feature, "value": m.value, "threshold": m.threshold}
            for m in breaches
        ],
        "report": str(report),
        "retrain_on_drift": usecase.monitoring.retrain_on_drift,
    }
