"""Both DAGs through real Airflow on ~1000 generated rows: `airflow dags test` / `tasks test`.

Every Airflow command runs in a subprocess with its own AIRFLOW_HOME (SQLite) and state folder
under tmp_path, the spark_default connection on local[2], no retries, and a local webhook for
failure alerts. The steps, in the order a new deployment meets them (score needs a champion, and
training needs the clean data of its logical date, which the score DAG makes):

1. D1, the score DAG's data part only: `airflow tasks test` ingest, validate and clean. This is
   also a partial run of the score DAG for D1 (it stopped before score and publish).
2. `airflow dags test prescore_churn_train D1`: the first model, @champion; Airflow records a
   champion asset event and queues the score DAG.
3. `airflow dags test prescore_churn_score D1`: the whole score DAG, a rerun of D1 after the
   partial run. raw and clean are replaced, not doubled; the scores are published.
4. `airflow dags test prescore_churn_score D2`: the next date of a two-day backfill.
5. `airflow tasks test prescore_churn_score score D1`: a retry of the score task for D1 after D2
   ran: pred D1 is replaced, D2 left alone.
6. D3 with a corrupt landing file: the run fails at ingest, every later task ends
   upstream_failed, the webhook hears of it, and current.duckdb still serves D2.

`airflow tasks test` exits 0 even when its task fails (Airflow 3.3), so steps 1 and 5 read the
task state it logs; `dags test` exits non-zero when its run fails, and the task states of each
run come from the metadata database. Delta tables are read back with DuckDB's delta extension
(no JVM in the test process). The six steps spark-submit 16 jobs (~20-40 s each on a quiet
2-core machine, twice that when the machine is busy); the measured times are printed at the end.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from prescore import tables
from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.lookup import Scores
from support import webhook_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"
ROWS = 1000
SCORE_DAG, TRAIN_DAG = "prescore_churn_score", "prescore_churn_train"
DATA_TASKS = ("ingest", "validate", "clean")
SCORE_TASKS = (*DATA_TASKS, "score", "publish", "monitor")
STEP_TIMEOUT = 1800


@dataclass
class Deployment:
    """One Airflow + prescore installation under tmp_path, and what its steps took."""

    home: Path
    state: Path
    env: dict[str, str]
    settings: Settings
    usecase: UseCase
    alerts: list[dict[str, Any]]
    times: dict[str, float] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.home / "commands.log"

    def run(self, step: str, *args: str, expect_ok: bool = True) -> tuple[int, str]:
        """Run one command, appending its output to the log; its exit code and output."""
        started = time.perf_counter()
        result = subprocess.run(
            args,
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        self.times[step] = time.perf_counter() - started
        with self.log.open("a") as log:
            log.write(f"\n==== {step}: {' '.join(args)}\n{result.stdout}")
        if expect_ok and result.returncode != 0:
            pytest.fail(f"{step} exited {result.returncode}; from {self.log}:\n{self.tail()}")
        return result.returncode, result.stdout

    def airflow(self, step: str, *args: str, expect_ok: bool = True) -> int:
        return self.run(step, str(BIN / "airflow"), *args, expect_ok=expect_ok)[0]

    def task_test(self, dag_id: str, task_id: str, day: str) -> None:
        """`airflow tasks test`, which exits 0 even when the task fails: read the state it logs."""
        step = f"tasks test {dag_id.rsplit('_', 1)[1]}.{task_id} {day}"
        _, output = self.run(step, str(BIN / "airflow"), "tasks", "test", dag_id, task_id, day)
        if "new_state=success" not in output or "new_state=failed" in output:
            pytest.fail(f"{step}: the task did not succeed; from {self.log}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        keep = ("error", "Traceback", "Exception", "new_state=failed", "DagRun Finished")
        text = self.log.read_text().splitlines()
        return "\n".join([line[:300] for line in text if any(k in line for k in keep)][-lines:])

    def task_states(self, dag_id: str) -> dict[str, str]:
        """Task states of the DAG's latest run, from Airflow's metadata database."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "select ti.task_id, ti.state from task_instance ti "
                "where ti.dag_id = ? and ti.run_id = "
                "(select run_id from dag_run where dag_id = ? order by id desc limit 1)",
                (dag_id, dag_id),
            ).fetchall()
        return dict(rows)

    def asset_events(self) -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "select a.uri, e.extra from asset_event e join asset a on a.id = e.asset_id "
                "order by e.id"
            ).fetchall()
        return [(uri, json.loads(extra or "{}")) for uri, extra in rows]

    def queued_by_assets(self) -> set[str]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute("select target_dag_id from asset_dag_run_queue").fetchall()
        return {dag_id for (dag_id,) in rows}

    def partitions(self, table: str) -> dict[str, tuple[int, int]]:
        """run_date -> (rows, distinct keys) of a Delta table, read with DuckDB."""
        keys = ", ".join(f'"{k}"' for k in self.usecase.keys)
        with _duckdb() as con:
            rows = con.execute(
                f"select cast(run_date as varchar), count(*), count(distinct ({keys})) "
                f"from delta_scan(?) group by 1 order by 1",
                [str(self.settings.table_path(table))],
            ).fetchall()
        return {run_date: (n, distinct) for run_date, n, distinct in rows}

    def landing_rows(self, run_date: str) -> int:
        folder = self.settings.landing_dir / self.usecase.name / f"run_date={run_date}"
        with _duckdb() as con:
            found = con.execute("select count(*) from read_parquet(?)", [f"{folder}/*.parquet"])
            return int(found.fetchone()[0])  # type: ignore[index]

    def current_snapshot(self) -> str:
        link = self.settings.serving_dir / self.usecase.name / "current.duckdb"
        return os.readlink(link)


def _duckdb() -> duckdb.DuckDBPyConnection:
    """DuckDB with the delta extension shipped in the duckdb-extension-delta wheel (no download)."""
    con = duckdb.connect()
    con.load_extension(str(tables.duckdb_delta_extension()))
    return con


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_server("/alerts") as server:
        yield server


def new_deployment(
    base: Path, webhook: tuple[str, list[dict[str, Any]]], usecase: str = "churn"
) -> Deployment:
    """An Airflow home and a state folder under `base`, for one use case's DAGs."""
    home, state = base / "airflow", base / "state"
    home.mkdir()
    # Only what this deployment sets: no AIRFLOW_*, PRESCORE_* or MLFLOW_* from the caller (the
    # DAG tests' conftest, for one, points AIRFLOW_HOME elsewhere).
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PRESCORE_", "MLFLOW_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Airflow queues asset-triggered runs only for unpaused DAGs (no scheduler runs here).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
            "PRESCORE_TASK_RETRIES": "0",
            "PRESCORE_STATE_DIR": str(state),
            "PRESCORE_ENV": "test",
            "PRESCORE_HMAC_KEY": "e2e-airflow-test-only-key",
            "PRESCORE_ALERT_WEBHOOK": webhook[0],
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
        }
    )
    settings = load_settings(env="test").model_copy(update={"state_dir": state})
    return Deployment(home, state, env, settings, load_usecase(usecase, settings), webhook[1])


def print_times(dep: Deployment, started: float) -> None:
    dep.times["total"] = time.perf_counter() - started
    width = max(map(len, dep.times))
    report = "\n".join(
        f"  {step:<{width}}  {seconds:6.1f} s" for step, seconds in dep.times.items()
    )
    print(f"\nAirflow e2e wall times (log: {dep.log}):\n{report}")


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, webhook: tuple[str, list[dict[str, Any]]]
) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path_factory.mktemp("airflow-e2e"), webhook)
    started = time.perf_counter()
    yield dep
    print_times(dep, started)


@pytest.fixture(scope="module")
def partial_d1(deployment: Deployment) -> dict[str, Any]:
    """Step 1: landing files for D1 and D2, then D1's ingest, validate, clean by `tasks test`."""
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
    for task in DATA_TASKS:
        dep.task_test(SCORE_DAG, task, D1)
    return {
        "raw": dep.partitions(dep.usecase.raw_table),
        "clean": dep.partitions(dep.usecase.clean_table),
    }


@pytest.fixture(scope="module")
def trained(deployment: Deployment, partial_d1: dict[str, Any]) -> dict[str, Any]:
    """Step 2: the train DAG for D1."""
    code = deployment.airflow(f"dags test train {D1}", "dags", "test", TRAIN_DAG, D1)
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
    code = dep.airflow(f"dags test score {D1}", "dags", "test", SCORE_DAG, D1)
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
    code = dep.airflow(f"dags test score {D2}", "dags", "test", SCORE_DAG, D2)
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
def failed_d3(deployment: Deployment, retried_score: dict[str, Any]) -> dict[str, Any]:
    """Step 6: D3's landing file is not Parquet at all."""
    dep = deployment
    before = dep.current_snapshot()
    landing = dep.settings.landing_dir / dep.usecase.name / f"run_date={D3}"
    landing.mkdir(parents=True)
    (landing / "part-00000.parquet").write_bytes(b"this is not a parquet file\n" * 100)
    code = dep.airflow(
        f"dags test score {D3} (corrupt)", "dags", "test", SCORE_DAG, D3, expect_ok=False
    )
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


def test_lookups_answer_from_the_published_snapshot(
    deployment: Deployment, backfilled: dict
) -> None:
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
