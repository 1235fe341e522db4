"""The forecast DAGs through real Airflow, run by `make demo`'s script as the README shows it
(`USECASE=forecast ... make demo`), kept cheap: 20 store-item series with 60 days of history, one
run date, every task run once. The script, scripts/demo.sh, makes three runs with Airflow's
DAG.test (what `airflow dags test` runs), in one process (scripts/demo_dags.py):

1. after `prescore datagen --history-days`, the score DAG's data part for D1 (ingest, validate,
   clean; the later tasks marked successful, not run): training needs clean history, and scoring
   needs a champion;
2. prescore_forecast_train for D1: the first model, @champion;
3. the score DAG for D1 again with its data part marked successful (step 1 ran it): score,
   publish, monitor and retention run, and the forecasts of the next 7 days are published and
   answer lookups by (store, item, target_date); the script ends with `prescore lookup`.

Seven spark-submit jobs (~20-40 s each on a quiet 2-core machine, 100-160 s on a busy shared one);
times are printed at the end. tests/e2e/test_airflow.py runs churn's DAGs step by step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_deploy import (
    ROOT,
    SCORE_TASKS,
    Deployment,
    as_demo,
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
    dep = as_demo(new_deployment(tmp_path_factory.mktemp("forecast-e2e"), webhook, "forecast"))
    started = time.perf_counter()
    yield dep
    print_times(dep, started)


@pytest.fixture(scope="module")
def ran(forecast_deployment: Deployment) -> dict[str, Any]:
    dep = forecast_deployment
    dep.env |= {
        "USECASE": "forecast",
        "RUN_DATE": D1,
        "DEMO_ROWS": str(SERIES),
        "DEMO_HISTORY_DAYS": str(HISTORY_DAYS),
    }
    _, output = dep.run("make demo (scripts/demo.sh)", str(ROOT / "scripts" / "demo.sh"))
    return {
        "output": output,
        "clean": dep.partitions(dep.usecase.clean_table),
        "train": dep.task_states(TRAIN_DAG),
        "score": dep.task_states(SCORE_DAG),
    }


def _predictions(dep: Deployment) -> list[tuple[Any, ...]]:
    table = tables.delta_scan_path(dep.settings, dep.usecase.predictions_table)
    with tables.duckdb_reading_delta(dep.settings) as con:
        return con.execute(
            "select store_id, item_id, target_date, horizon, score, run_date "
            "from delta_scan(?) order by all",
            [table],
        ).fetchall()


def test_both_forecast_dags_succeed(ran: dict[str, Any]) -> None:
    assert D1 in ran["clean"], "the data part wrote no clean rows for the run date"
    assert ran["train"] == {"train": "success"}
    assert ran["score"] == dict.fromkeys(SCORE_TASKS, "success")


def test_the_demo_says_which_tasks_each_run_left_out_and_ends_with_lookups(
    ran: dict[str, Any],
) -> None:
    output = ran["output"]
    data_part, _, rest = output.partition("==> 3/5")
    assert "ingest     success" in data_part
    assert "score      marked success, not run" in data_part
    assert "ingest     marked success, not run" in rest
    assert "publish    success" in rest
    assert "# forecast: answered from the published snapshot" in rest
    assert "demo: done in" in rest


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
