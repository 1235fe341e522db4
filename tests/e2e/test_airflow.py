"""Both DAGs through real Airflow on ~1000 generated rows: `airflow dags test` / `tasks test`,
with every byte of state on the session's S3 server (the object_store fixture).

Every Airflow command runs in a subprocess with its own AIRFLOW_HOME (SQLite) and state prefix on
the store, MLflow's database under tmp_path, the spark_default connection on local[2], no
retries, and a local webhook for failure alerts (tests/e2e/airflow_deploy.py). The test process
reads the tables back through DuckDB's httpfs and follows the publish as a serving host would.
The forecast DAG's e2e test keeps a local state folder. The steps, in the order a new deployment meets them
(score needs a champion, and training needs the clean data of its logical date, which the score
DAG makes):

1. D1, the score DAG's data part only: `airflow dags test` runs ingest, validate and clean, and
   marks score, publish and monitor successful without running them (one Airflow process, not
   three `tasks test`). This is a partial run of the score DAG for D1: nothing scored or published.
2. `airflow dags test prescore_churn_train D1`: the first model, @champion; Airflow records a
   champion asset event and queues the score DAG.
3. `airflow dags test prescore_churn_score D1`: the whole score DAG, a rerun of D1 after the
   partial run. raw and clean are replaced, not doubled; the scores are published.
4. `airflow dags test prescore_churn_score D2`: the next date of a two-day backfill.
5. `airflow tasks test prescore_churn_score score D1`: a retry of the score task for D1 after D2
   ran: pred D1 is replaced, D2 left alone. Then the publish task of D1 again: an older date
   published after a newer one is a backfill, logged but not served; D2 stays current.
6. D3 with a corrupt landing file: the run fails at ingest, every later task ends
   upstream_failed, the webhook hears of it, and current.duckdb still serves D2.

`airflow tasks test` exits 0 even when its task fails (Airflow 3.3), so step 5 reads the task
state it logs; `dags test` exits non-zero when its run fails, and the task states of each run
come from the metadata database. Delta tables are read back with DuckDB's delta extension (no JVM
in the test process). The six steps spark-submit 19 jobs, each one needed by an assertion
(~20-40 s each on a quiet 2-core machine, twice that when the machine is busy); the measured
times are printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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

from prescore.serving import publish_log, snapshot
from prescore.serving.client import Scores

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"
ROWS = 1000
SCORE_DAG, TRAIN_DAG = "prescore_churn_score", "prescore_churn_train"


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: tuple[str, list[dict[str, Any]]],
    object_store: str,
) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path_factory.mktemp("airflow-e2e"), webhook, store=object_store)
    started = time.perf_counter()
    yield dep
    print_times(dep, started)


@pytest.fixture(scope="module")
def partial_d1(deployment: Deployment) -> dict[str, Any]:
    """Step 1: landing files for D1 and D2, then D1's ingest, validate, clean; the rest of the
    score DAG is marked successful, not run."""
    dep = deployment
    dep.airflow("airflow db migrate", "db", "migrate")
    for day in (D1, D2):
        dep.run(
            f"datagen {day}",
            str(BIN / "prescore"),
            "datagen",
            "--usecase",
            "churn",
            "--run-date",
            day,
            "--rows",
            str(ROWS),
        )
    later_tasks = SCORE_TASKS[len(DATA_TASKS) :]
    dep.dag_test(f"dags test score {D1} (data part)", SCORE_DAG, D1, mark_success=later_tasks)
    return {
        "raw": dep.partitions(dep.usecase.raw_table),
        "clean": dep.partitions(dep.usecase.clean_table),
    }


@pytest.fixture(scope="module")
def trained(deployment: Deployment, partial_d1: dict[str, Any]) -> dict[str, Any]:
    """Step 2: the train DAG for D1."""
    code = deployment.dag_test(f"dags test train {D1}", TRAIN_DAG, D1)
    return {
        "code": code,
        "states": deployment.task_states(TRAIN_DAG),
        "events": deployment.asset_events(),
        "queued": deployment.queued_by_assets(),
    }


@pytest.fixture(scope="module")
def scored_d1(deployment: Deployment, trained: dict[str, Any]) -> dict[str, Any]:
    """Step 3: the whole score DAG for D1, after the partial run of step 1."""
    dep = deployment
    code = dep.dag_test(f"dags test score {D1}", SCORE_DAG, D1)
    return {
        "code": code,
        "states": dep.task_states(SCORE_DAG),
        "current": dep.current_snapshot(),
        **{t: dep.partitions(t) for t in _tables(dep)},
    }


@pytest.fixture(scope="module")
def backfilled(deployment: Deployment, scored_d1: dict[str, Any]) -> dict[str, Any]:
    """Step 4: the score DAG for D2, the second date of the backfill."""
    dep = deployment
    code = dep.dag_test(f"dags test score {D2}", SCORE_DAG, D2)
    return {
        "code": code,
        "states": dep.task_states(SCORE_DAG),
        "current": dep.current_snapshot(),
        **{t: dep.partitions(t) for t in _tables(dep)},
    }


@pytest.fixture(scope="module")
def retried_score(deployment: Deployment, backfilled: dict[str, Any]) -> dict[str, Any]:
    """Step 5: the score task of D1 again, as a retry would run it."""
    dep = deployment
    dep.task_test(SCORE_DAG, "score", D1)
    return {t: dep.partitions(t) for t in _tables(dep)}


@pytest.fixture(scope="module")
def republished_d1(deployment: Deployment, retried_score: dict[str, Any]) -> dict[str, Any]:
    """Step 5, continued: D1's publish task again, after D2 was published and served."""
    dep = deployment
    before = dep.current_snapshot()
    dep.task_test(SCORE_DAG, "publish", D1)
    return {
        "before": before,
        "after": dep.current_snapshot(),
        "events": publish_log.read_with_duckdb(dep.settings, dep.usecase),
    }


@pytest.fixture(scope="module")
def failed_d3(deployment: Deployment, republished_d1: dict[str, Any]) -> dict[str, Any]:
    """Step 6: D3's landing file is not Parquet at all."""
    dep = deployment
    before = dep.current_snapshot()
    landing = dep.settings.landing_dir / dep.usecase.name / f"run_date={D3}"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "part-00000.parquet").write_bytes(b"this is not a parquet file\n" * 100)
    code = dep.dag_test(f"dags test score {D3} (corrupt)", SCORE_DAG, D3, expect_ok=False)
    return {
        "code": code,
        "states": dep.task_states(SCORE_DAG),
        "before": before,
        "after": dep.current_snapshot(),
        "raw": dep.partitions(dep.usecase.raw_table),
    }


def _tables(dep: Deployment) -> list[str]:
    u = dep.usecase
    return [u.raw_table, u.clean_table, u.predictions_table]


# ---------------------------------------------------------------- 1-2: data part, then training


def test_data_part_writes_d1_raw_and_clean(deployment: Deployment, partial_d1: dict) -> None:
    assert partial_d1["raw"][D1][0] == deployment.landing_rows(D1) > ROWS  # plus defects
    rows, distinct = partial_d1["clean"][D1]
    assert rows == distinct > 0.9 * ROWS


def test_train_dag_succeeds_and_announces_the_champion(trained: dict) -> None:
    assert trained["code"] == 0
    assert trained["states"] == {"train": "success"}
    assert ("prescore://churn/champion", {"run_date": D1}) in trained["events"]
    # The scheduler would now start the score DAG for the new champion.
    assert SCORE_DAG in trained["queued"]


# ---------------------------------------------------------------- 3-5: score, rerun, backfill


def test_score_dag_succeeds_and_publishes(deployment: Deployment, scored_d1: dict) -> None:
    assert scored_d1["code"] == 0
    assert scored_d1["states"] == dict.fromkeys(SCORE_TASKS, "success")
    assert scored_d1["current"].endswith(".duckdb") and D1 in scored_d1["current"]
    clean_events = [e for uri, e in deployment.asset_events() if uri == "prescore://churn/clean"]
    assert {"run_date": D1} in clean_events
    # local[2]: each task's one JVM loads the jars (the AWS SDK's too) from its class path; its
    # executor copies none from the driver.
    assert "Fetching spark://" not in deployment.log.read_text()


@pytest.mark.reliability
def test_rerun_after_a_partial_run_replaces_raw_and_clean(
    partial_d1: dict, scored_d1: dict, deployment: Deployment
) -> None:
    u = deployment.usecase
    assert scored_d1[u.raw_table] == partial_d1["raw"]
    assert scored_d1[u.clean_table] == partial_d1["clean"]
    rows, distinct = scored_d1[u.predictions_table][D1]
    assert rows == distinct == scored_d1[u.clean_table][D1][0]


@pytest.mark.reliability
def test_backfill_writes_each_date_once(deployment: Deployment, backfilled: dict) -> None:
    u = deployment.usecase
    assert backfilled["code"] == 0
    assert backfilled["states"] == dict.fromkeys(SCORE_TASKS, "success")
    assert sorted(backfilled[u.raw_table]) == [D1, D2]
    assert backfilled[u.raw_table][D2][0] == deployment.landing_rows(D2)
    for table in (u.clean_table, u.predictions_table):
        assert sorted(backfilled[table]) == [D1, D2], table
        for day in (D1, D2):
            rows, distinct = backfilled[table][day]
            assert rows == distinct == backfilled[u.clean_table][day][0], (table, day)
    assert D2 in backfilled["current"]


@pytest.mark.reliability
def test_retried_score_task_leaves_no_duplicate_predictions(
    deployment: Deployment, backfilled: dict, retried_score: dict
) -> None:
    for table in _tables(deployment):
        assert retried_score[table] == backfilled[table], table


@pytest.mark.reliability
def test_an_older_date_published_after_a_newer_one_is_logged_not_served(
    republished_d1: dict,
) -> None:
    assert republished_d1["after"] == republished_d1["before"]
    assert D2 in republished_d1["after"]
    last = republished_d1["events"][-1]
    assert (last.action, last.run_date.isoformat()) == ("backfill", D1)
    assert last.snapshot.startswith("snapshots/")  # relative: the state folder can move


def test_lookups_answer_from_the_published_snapshot(
    deployment: Deployment, backfilled: dict
) -> None:
    snapshot.follow_store(deployment.settings, deployment.usecase)  # a serving host's copy
    scores = Scores(deployment.usecase, deployment.settings)
    assert scores.snapshot.name == Path(backfilled["current"]).name
    keys = scores.sample_keys(3)
    assert len(keys) == 3
    for found in scores.get_many(keys):
        assert found.score is not None and 0.0 <= found.score <= 1.0
        assert found.model_version == "1"
    assert scores.get("no-such-customer").freshness == "missing"


# ---------------------------------------------------------------- 6: a corrupt landing file


def test_corrupt_landing_file_fails_the_run_before_anything_is_written(failed_d3: dict) -> None:
    assert failed_d3["code"] != 0
    assert failed_d3["states"] == {
        "ingest": "failed",
        **dict.fromkeys(SCORE_TASKS[1:], "upstream_failed"),
    }
    assert D3 not in failed_d3["raw"]


def test_failed_run_leaves_the_published_snapshot_alone(failed_d3: dict) -> None:
    assert failed_d3["after"] == failed_d3["before"]
    assert D2 in failed_d3["after"]


def test_failed_task_is_reported_to_the_webhook(deployment: Deployment, failed_d3: dict) -> None:
    alerts = [post["body"] for post in deployment.alerts]
    assert [(a["dag_id"], a["task_id"], a["run_date"]) for a in alerts] == [
        (SCORE_DAG, "ingest", D3)
    ]
    assert "spark-submit" in alerts[0]["exception"]
