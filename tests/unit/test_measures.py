"""The monitoring measures' pure decisions: verdicts, the outcome window, the alert, the rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality

from prescore.config import MonitoringSettings, UseCase
from prescore.monitoring.measures import (
    Measure,
    drift_alert,
    judged,
    measure_rows,
    outcome_window,
    outcomes,
    prediction_measures,
    realized,
    realized_measures,
)

pytestmark = pytest.mark.unit
CONTEXT = {"reference_rows": 10, "current_rows": 10, "compared": "a vs b"}


@dataclass(frozen=True)
class Publish:
    """What outcome_window reads of a publish_log.Event."""

    run_date: date
    version: int


@pytest.mark.parametrize(
    ("value", "threshold", "high_is_bad", "breached"),
    [
        (0.3, 0.2, True, True),
        (0.2, 0.2, True, False),  # at the threshold is not past it
        (0.1, 0.2, True, False),
        (0.6, 0.7, False, True),  # AUC under its minimum
        (0.8, 0.7, False, False),
        (None, 0.2, True, False),  # not measured: never breached
        (0.9, None, True, False),  # no threshold: stored, never breached
    ],
)
def test_judged_is_breached_only_past_the_threshold_in_its_bad_direction(
    value: float | None, threshold: float | None, high_is_bad: bool, breached: bool
) -> None:
    found = judged("m", "x", value, threshold, high_is_bad=high_is_bad, **CONTEXT)
    assert found == Measure("m", "x", value, threshold, breached, 10, 10, "a vs b")


def test_realized_takes_its_threshold_and_direction_from_the_settings() -> None:
    limits = MonitoringSettings(min_auc=0.7, max_rmse=2.0)
    assert realized("auc", 0.65, limits, **CONTEXT).breached
    assert not realized("auc", 0.75, limits, **CONTEXT).breached
    assert realized("rmse", 2.5, limits, **CONTEXT).breached
    mae = realized("mae", 99.0, limits, **CONTEXT)  # no threshold for MAE
    assert (mae.metric, mae.threshold, mae.breached) == ("realized_mae", None, False)


NOV = [date(2026, 11, d) for d in range(1, 8)]


@pytest.mark.parametrize(
    ("earlier", "horizon_days", "expected"),
    [
        ([], None, []),
        ([(NOV[4], 2), (NOV[4], 1), (NOV[3], 1)], None, [(NOV[4], 2)]),  # newest of the day before
        ([(NOV[5], 1), (NOV[3], 1), (NOV[1], 1)], 3, [(NOV[5], 1), (NOV[3], 1)]),  # in the horizon
        ([(NOV[0], 1)], 3, []),  # too old for any target date in today's batch
    ],
    ids=["nothing", "previous-run-date", "time-series-horizon", "time-series-too-old"],
)
def test_outcome_window_holds_the_publishes_whose_labels_arrive_today(
    earlier: list[tuple[date, int]], horizon_days: int | None, expected: list[tuple[date, int]]
) -> None:
    window = outcome_window(
        [Publish(d, v) for d, v in earlier], run_date=NOV[6], horizon_days=horizon_days
    )
    assert [(p.run_date, p.version) for p in window] == expected


def test_drift_alert_names_each_breach_and_the_report(churn: UseCase) -> None:
    breach = Measure("feature_psi", "tenure_months", 0.5, 0.2, True, 10, 10, "a vs b")
    payload = drift_alert([breach], usecase=churn, run_date=NOV[0], report=Path("/r/m.html"))
    assert payload == {
        "event": "prescore_monitoring_breach",
        "usecase": "churn",
        "run_date": "2026-11-01",
        "breaches": [
            {"metric": "feature_psi", "feature": "tenure_months", "value": 0.5, "threshold": 0.2}
        ],
        "report": "/r/m.html",
        "retrain_on_drift": churn.monitoring.retrain_on_drift,
    }


def test_measure_rows_are_the_monitoring_table_rows(spark) -> None:
    from prescore.catalog import MONITORING_SCHEMA

    at = datetime(2026, 11, 1, 6)
    found = Measure("prediction_ks", None, 0.1, None, False, 5, 6, "x", "detail")
    rows = measure_rows([found], usecase="churn", run_date=NOV[0], computed_at=at)
    frame = spark.createDataFrame(rows, schema=MONITORING_SCHEMA)
    expected = spark.createDataFrame(
        [("churn", NOV[0], "prediction_ks", None, 0.1, None, False, 5, 6, "x", "detail", at)],
        schema=MONITORING_SCHEMA,
    )
    assert_df_equality(frame, expected)


def test_prediction_drift_before_a_second_publish_is_not_measured() -> None:
    limits = MonitoringSettings()
    psi, ks = prediction_measures(None, None, limits=limits, compared="")
    assert (psi.metric, psi.value, psi.breached) == ("prediction_psi", None, False)
    assert (ks.metric, ks.threshold) == ("prediction_ks", None)
    assert psi.detail == "not measured: no earlier run date was published"


def test_outcomes_join_predictions_with_later_labels_on_the_key(spark, churn: UseCase) -> None:
    key = churn.keys[0]
    predictions = spark.createDataFrame(
        [("C1", 0.9), ("C2", 0.2), ("C3", 0.5)], f"{key} string, score double"
    )
    labels = spark.createDataFrame(
        [("C1", 1), ("C2", 0), ("C4", 1), ("C3", None)], f"{key} string, {churn.label} int"
    )
    expected = spark.createDataFrame(
        [("C1", 0.9, 1), ("C2", 0.2, 0)], f"{key} string, score double, {churn.label} int"
    )
    assert_df_equality(
        outcomes(predictions, labels, usecase=churn), expected, ignore_row_order=True
    )


def test_realized_measures_under_min_rows_are_not_measured(spark, churn: UseCase) -> None:
    usecase = churn.model_copy(update={"monitoring": MonitoringSettings(min_rows=5)})
    joined = spark.createDataFrame([(0.9, 1), (0.2, 0)], f"score double, {churn.label} int")
    (auc,) = realized_measures(joined, usecase=usecase, compared="p with labels")
    assert (auc.metric, auc.value, auc.current_rows) == ("realized_auc", None, 2)
    assert auc.detail == "not measured: 2 labelled rows < min_rows 5"
