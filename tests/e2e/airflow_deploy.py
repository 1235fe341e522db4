"""A throwaway Airflow + prescore deployment for the e2e DAG tests (test_airflow.py for churn,
test_forecast_dag.py for forecast), so neither test file imports the other.

Every Airflow command runs in a subprocess with its own AIRFLOW_HOME (SQLite) and state folder
under tmp_path (or a prefix on the test session's object store), the spark_default connection
on local[2], no retries, and a local webhook for failure alerts. Delta tables are read back with
DuckDB's delta extension (no JVM in the test process). Each step's wall time is kept and printed
at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.platform import tables
from prescore.serving import snapshot
from prescore.storage import StatePath, s3_uri
from support import settings_on_store, webhook_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA_TASKS = ("ingest", "validate", "clean")
# retention hangs off clean, beside score: last here, so it is marked done with the later tasks.
SCORE_TASKS = (*DATA_TASKS, "score", "publish", "monitor", "retention")
STEP_TIMEOUT = 1800


@dataclass
class Deployment:
    """One Airflow + prescore installation under tmp_path, and what its steps took."""

    home: Path
    state: StatePath
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

    def dag_test(
        self,
        step: str,
        dag_id: str,
        day: str,
        *,
        mark_success: Iterable[str] = (),
        expect_ok: bool = True,
    ) -> int:
        """`airflow dags test`, which exits non-zero when the run fails. Tasks in `mark_success`
        are marked successful without running: the part of the run another step already did."""
        marked = "|".join(mark_success)
        args = ("--mark-success-pattern", marked) if marked else ()
        return self.airflow(step, "dags", "test", dag_id, day, *args, expect_ok=expect_ok)

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
        with tables.duckdb_reading_delta(self.settings) as con:
            rows = con.execute(
                f"select cast(run_date as varchar), count(*), count(distinct ({keys})) "
                f"from delta_scan(?) group by 1 order by 1",
                [tables.delta_scan_path(self.settings, table)],
            ).fetchall()
        return {run_date: (n, distinct) for run_date, n, distinct in rows}

    def landing_rows(self, run_date: str) -> int:
        folder = self.settings.landing_dir / self.usecase.name / f"run_date={run_date}"
        with tables.duckdb_reading_delta(self.settings) as con:
            found = con.execute(
                "select count(*) from read_parquet(?)", [f"{s3_uri(folder)}/*.parquet"]
            )
            return int(found.fetchone()[0])  # type: ignore[index]

    def current_snapshot(self) -> str:
        """What the published pointer names: `snapshots/<name>.duckdb`."""
        target = snapshot.pointer_target(self.settings, self.usecase)
        assert target is not None, "nothing published"
        return target


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local alert webhook: its URL and the posts it received (import it into the test file)."""
    with webhook_server("/alerts") as server:
        yield server


def new_deployment(
    base: Path,
    webhook: tuple[str, list[dict[str, Any]]],
    usecase: str = "churn",
    *,
    store: str | None = None,
) -> Deployment:
    """An Airflow home under `base` for one use case's DAGs, and its state: a folder under
    `base`, or a prefix in the s3a:// bucket `store` (then MLflow's database and each host's
    serving copy stay under `base`)."""
    home = base / "airflow"
    home.mkdir()
    settings = load_settings(env="test")
    if store:  # the test process reads as a serving host, with a copy of its own
        settings = settings_on_store(settings, store, base)
    else:
        settings = settings.model_copy(update={"state_dir": base / "state"})
    state = settings.state_dir
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
    if store:  # the tasks share MLflow's database and keep their own serving copy
        env |= {
            "MLFLOW_TRACKING_URI": str(settings.mlflow.tracking_uri),
            "PRESCORE_SERVING_CACHE_DIR": str(base / "tasks"),
        }
    return Deployment(home, state, env, settings, load_usecase(usecase, settings), webhook[1])


def as_demo(dep: Deployment) -> Deployment:
    """The same deployment with Airflow's home where scripts/demo.sh keeps it, <state>/airflow,
    so that the script (`make demo`) can run in it and its runs be read back."""
    home = Path(dep.state) / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dep.env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    return dataclasses.replace(dep, home=home, env=env)


def print_times(dep: Deployment, started: float) -> None:
    dep.times["total"] = time.perf_counter() - started
    width = max(map(len, dep.times))
    report = "\n".join(
        f"  {step:<{width}}  {seconds:6.1f} s" for step, seconds in dep.times.items()
    )
    print(f"\nAirflow e2e wall times (log: {dep.log}):\n{report}")
