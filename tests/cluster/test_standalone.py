"""The score job under spark-submit on a real standalone cluster gives the same predictions as under
local[2], also when a worker dies in the middle of scoring, with every byte of state on the
session's S3 server: driver and executors share no folder, as on hosts of their own.

The state (clean customers, a @champion model in MLflow) is prepared in-process; each score run is
a separate `spark-submit jobs/score.py`, as a DAG task launches it (the jars setup resolved, as
--jars, which the executors fetch from the driver). Predictions are compared on key + score +
model_version at the Delta version each run wrote (scored_at differs by design).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import PROJECT_ROOT, Settings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_stage
from prescore.platform import tables
from prescore.platform.bundle import BUNDLE_NAME, build_bundle
from prescore.platform.spark import spark_conf
from prescore.storage import is_object_store
from support import settings_on_store

if TYPE_CHECKING:
    from tests.cluster.conftest import SparkSubmit, StandaloneCluster, SubmittedJob

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUN_DATE = date(2026, 11, 1)
ROWS = 2000
Snapshot = dict[tuple[object, ...], tuple[float, str]]  # key -> (score, model_version)


@dataclass(frozen=True)
class ScoreRun:
    """A finished score job: where it ran, how long it took, what it wrote."""

    master: str
    wall_s: float
    predictions_version: int
    predictions: Snapshot
    driver_log: Path


@pytest.fixture(scope="module")
def state(
    spark: SparkSession,
    settings: Settings,
    object_store: str,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """A state on the store with RUN_DATE's clean customers and a @champion model: what score
    reads. MLflow's database is the one local file, and only the drivers open it."""
    state = settings_on_store(settings, object_store, tmp_path_factory.mktemp("cluster_state"))
    assert is_object_store(state.state_dir)
    write_landing(state, churn, RUN_DATE, rows=ROWS)
    ctx = RunContext(state, churn, RUN_DATE, spark)
    for stage in ("ingest", "validate", "clean", "train"):
        run_stage(stage, ctx)
    return state


def submit_score(
    spark_submit: SparkSubmit,
    state: Settings,
    usecase: UseCase,
    master: str,
    logs: Path,
    extra_conf: dict[str, str] | None = None,
) -> SubmittedJob:
    """Start jobs/score.py as a deployment does: --master, the local jars setup resolved for the
    state's packages (Delta, hadoop-aws, the S3 commit guard) and the prescore zip (--py-files)
    from the launcher, every other prescore setting as --conf; the state, the MLflow database
    and the environment name from the env (the store's address and keys too: spark_env)."""
    conf = spark_conf(state)
    jars = conf.pop("spark.jars", None)
    assert jars, "setup resolved no local jars for the state's packages: run make setup"
    conf.update(extra_conf or {})
    args = [
        *("--jars", jars),  # executors fetch them from the driver: the SDK too
        *("--py-files", str(build_bundle(logs))),  # executors import prescore from this zip
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        str(PROJECT_ROOT / "jobs" / "score.py"),
        *("--usecase", usecase.name, "--run-date", RUN_DATE.isoformat()),
    ]
    env = {
        "PRESCORE_STATE_DIR": str(state.state_dir),
        "MLFLOW_TRACKING_URI": str(state.mlflow.tracking_uri),
        "PRESCORE_ENV": "test",
        "PRESCORE_HOME": str(PROJECT_ROOT),  # prescore itself comes from the --py-files zip
        "PRESCORE_HMAC_KEY": os.environ["PRESCORE_HMAC_KEY"],
        "PYSPARK_PYTHON": sys.executable,
    }
    return spark_submit(args, master=master, env=env, logs=logs)


def finish(spark: SparkSession, state: Settings, usecase: UseCase, job: SubmittedJob) -> ScoreRun:
    """Wait for a score job, then read what it wrote: RUN_DATE at the Delta version it reports."""
    wall_s = job.wait()
    # The job prints its summary as indented JSON, last; the lines before it are log lines.
    lines = job.stdout.splitlines()
    start = max((i for i, line in enumerate(lines) if line == "{"), default=None)
    assert start is not None, f"{job.master}: no JSON summary on stdout:\n{job.stdout[-2000:]}"
    summary = json.loads("\n".join(lines[start:]))
    version = int(summary["predictions_version"])
    rows = (
        tables.read(spark, state, usecase.predictions_table, version)
        .where(F.col(tables.RUN_DATE) == F.lit(RUN_DATE))
        .select(*usecase.keys, "score", "model_version")
        .collect()
    )
    predictions = {tuple(r[k] for k in usecase.keys): (r.score, r.model_version) for r in rows}
    assert len(predictions) == len(rows), f"{job.master}: a key was scored twice"
    return ScoreRun(job.master, wall_s, version, predictions, job.driver_log)


def assert_same_predictions(run: ScoreRun, reference: ScoreRun) -> None:
    found, expected = run.predictions, reference.predictions
    differing = sorted(k for k in found.keys() | expected.keys() if found.get(k) != expected.get(k))
    examples = [(k, expected.get(k), found.get(k)) for k in differing[:5]]
    assert not differing, (
        f"{run.master} vs {reference.master}: {len(differing)} of {len(expected)} keys differ "
        f"(key, {reference.master}, {run.master}): {examples}"
    )


@pytest.fixture(scope="module")
def local_run(
    spark: SparkSession,
    state: Settings,
    churn: UseCase,
    spark_submit: SparkSubmit,
    tmp_path_factory: pytest.TempPathFactory,
) -> ScoreRun:
    """The reference: the same job with --master local[2]."""
    logs = tmp_path_factory.mktemp("score_local")
    run = finish(spark, state, churn, submit_score(spark_submit, state, churn, "local[2]", logs))
    assert len(run.predictions) > 0.9 * ROWS  # every clean customer is scored
    return run


def test_cluster_scores_equal_local_scores(
    spark: SparkSession,
    state: Settings,
    churn: UseCase,
    cluster: StandaloneCluster,
    spark_submit: SparkSubmit,
    local_run: ScoreRun,
    tmp_path: Path,
) -> None:
    apps_before = {app["id"] for app in cluster.status()["completedapps"]}
    job = submit_score(spark_submit, state, churn, cluster.url, tmp_path)
    run = finish(spark, state, churn, job)
    print(
        f"\nscore job, {len(run.predictions)} customers, wall time: "
        f"local[2] {local_run.wall_s:.1f} s, standalone (2 workers x 1 core) {run.wall_s:.1f} s"
    )
    assert run.predictions_version != local_run.predictions_version
    assert_same_predictions(run, local_run)
    # It did run on the cluster: the master finished one app, which had an executor per worker.
    apps = {app["id"] for app in cluster.status()["completedapps"]} - apps_before
    assert len(apps) == 1, f"expected one new finished application on the master, got {apps}"
    for worker in (w for w in cluster.workers if w.alive):
        executors = worker.status()["finishedexecutors"]
        assert apps <= {e["appid"] for e in executors}, f"{worker.name} ran no executor of {apps}"
        # The library travelled as --py-files and the S3 connector as --jars: each executor
        # fetched both into its folder, and wrote its part of the predictions to the store.
        assert worker.work_dir is not None
        (app,) = apps
        for shipped in (BUNDLE_NAME, "*hadoop-aws-*.jar"):
            found = list(worker.work_dir.glob(f"{app}/*/{shipped}"))
            assert found, f"{worker.name}: no {shipped} in {worker.work_dir / app}"


@pytest.mark.reliability
def test_cluster_job_survives_losing_a_worker_mid_scoring(
    spark: SparkSession,
    state: Settings,
    churn: UseCase,
    cluster: StandaloneCluster,
    spark_submit: SparkSubmit,
    local_run: ScoreRun,
    tmp_path: Path,
) -> None:
    # Spark's event log records how every task ended, including those lost with an executor.
    events = tmp_path / "events"
    events.mkdir()
    event_log = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false",
    }
    job = submit_score(spark_submit, state, churn, cluster.url, tmp_path, event_log)
    # An executor starts its Python daemon with its first Python task, which in the score job is
    # the scoring stage (mapInArrow, then the Delta write). Kill that worker while the task runs.
    victim = None
    while victim is None and job.running() and job.elapsed() < job.timeout_s:
        victim = next((w for w in cluster.workers if w.alive and w.python_daemons()), None)
        time.sleep(0.1)
    if victim is None:
        job.wait()  # fails with the driver log if the job failed or hung
        pytest.fail("the job finished before any worker started a Python task")
    victim.kill()
    killed_at = job.elapsed()
    run = finish(spark, state, churn, job)

    lost, succeeded = task_outcomes(events)
    print(
        f"\n{victim.name} killed {killed_at:.1f} s into a {run.wall_s:.1f} s cluster run; "
        f"{len(lost)} running task(s) lost with it and run again: {sorted(lost)}"
    )
    assert lost, "no task was running on the killed worker: the kill came too late to test a retry"
    assert lost <= succeeded, f"lost tasks never completed elsewhere: {sorted(lost - succeeded)}"
    assert victim.webui not in cluster.alive_workers()
    assert_same_predictions(run, local_run)


def task_outcomes(events: Path) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(stage, partition) of the tasks lost with an executor, and of those that succeeded, from
    the application's event log (Spark 4 rolls it: events/eventlog_v2_<app>/events_<n>_<app>)."""
    lines = [line for log in events.rglob("events_*") for line in log.read_text().splitlines()]
    ends = [e for e in map(json.loads, lines) if e["Event"] == "SparkListenerTaskEnd"]

    def tasks(reason: str) -> set[tuple[int, int]]:
        return {
            (e["Stage ID"], e["Task Info"]["Index"])
            for e in ends
            if e["Task End Reason"]["Reason"] == reason
        }

    return tasks("ExecutorLostFailure"), tasks("Success")
