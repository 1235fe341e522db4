"""The forecast DAGs through real Airflow, as tests/e2e/test_airflow.py runs churn's, kept cheap:
20 store-item series with 60 days of history, one run date, and every task run once.

1. `prescore datagen` with --history-days, then the score DAG's data part for D1 (ingest,
   validate, clean; score, publish and monitor marked successful, not run): training needs clean
   history, and scoring needs a champion.
2. `airflow dags test prescore_forecast_train D1`: the first model, @champion.
3. `airflow dags test prescore_forecast_score D1` with the data part marked successful (step 1 ran
   it): score, publish and monitor run, and the forecasts of the next 7 days are published and
   answer lookups by (store, item, target_date).

Seven spark-submit jobs (~20-40 s each on a quiet 2-core machine, 100-160 s on a busy shared one);
times are printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_deploy import (
    BIN,
    DATA_TASKS,
    SCORE_TASKS,
    Deployment,
    new_deployment,
    print_times,
)
from airflow_deploy import webhook as webhook  # the fixture, for new_deployment's alerts

from prescore.platform import tables
from prescore.serving.client import Scores

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

D1 = "2026-11-01"
SERIES, HISTORY_DAYS, HORIZON = 20, 59, 7
SCORE_DAG, TRAIN_DAG = "prescore_forecast_score", "prescore_forecast_train"


@pytest.fixture(scope="module")
def forecast_deployment(
    tmp_path_factory: pytest.TempPathFactory, webhook: tuple[str, list[dict[str, Any]]]
) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path_factory.mktemp("forecast-e2e"), webhook, "forecast")
    started = time.perf_counter()
    yield dep
    print_times(dep, started)


@pytest.fixture(scope="module")
def ran(forecast_deployment: Deployment) -> dict[str, Any]:
    dep = forecast_deployment
    dep.airflow("airflow db migrate", "db", "migrate")
    dep.run(
        f"datagen {D1}",
        str(BIN / "prescore"),
        *("datagen", "--usecase", "forecast", "--run-date", D1),
        *("--rows", str(SERIES), "--history-days", str(HISTORY_DAYS)),
    )
    later_tasks = SCORE_TASKS[len(DATA_TASKS) :]
    dep.dag_test(f"dags test score {D1} (data part)", SCORE_DAG, D1, mark_success=later_tasks)
    clean = dep.partitions(dep.usecase.clean_table)
    dep.dag_test(f"dags test train {D1}", TRAIN_DAG, D1)
    train_states = dep.task_states(TRAIN_DAG)
    # The same logical date again: Airflow replaces the data-part run with this one.
    dep.dag_test(f"dags test score {D1}", SCORE_DAG, D1, mark_success=DATA_TASKS)
    return {"clean": clean, "train": train_states, "score": dep.task_states(SCORE_DAG)}


def _predictions(dep: Deployment) -> list[tuple[Any, ...]]:
    table = tables.delta_scan_path(dep.settings, dep.usecase.predictions_table)
    with tables.duckdb_reading_delta(dep.settings) as con:
        return con.execute(
            "select store_id, item_id, target_date, horizon, score, run_date "
            "from delta_scan(?) order by all",
            [table],
        ).fetchall()


def test_both_forecast_dags_succeed(ran: dict[str, Any]) -> None:
    assert ran["clean"], "the data part wrote no clean history"
    assert ran["train"] == {"train": "success"}
    assert ran["score"] == dict.fromkeys(SCORE_TASKS, "success")


def test_the_score_dag_publishes_the_next_days_of_every_series(
    forecast_deployment: Deployment, ran: dict[str, Any]
) -> None:
    rows = _predictions(forecast_deployment)
    day = date.fromisoformat(D1)
    assert len(rows) == SERIES * HORIZON
    assert {(r[2], r[3]) for r in rows} == {
        (day + timedelta(days=h), h) for h in range(1, HORIZON + 1)
    }
    assert {r[5] for r in rows} == {day}


def test_published_forecasts_answer_lookups_by_store_item_and_target_date(
    forecast_deployment: Deployment, ran: dict[str, Any]
) -> None:
    dep = forecast_deployment
    day = date.fromisoformat(D1)
    assert Path(dep.settings.serving_dir / "forecast" / "current.duckdb").exists()
    client = Scores(dep.usecase, dep.settings)
    try:
        answers = client.get_many([("S001", "I004", day + timedelta(days=h)) for h in range(1, 8)])
    finally:
        client.close()
    expected = {(r[2].isoformat(), r[4]) for r in _predictions(dep) if r[:2] == ("S001", "I004")}
    assert {(a.key[2], a.score) for a in answers} == expected
