"""`mlflow run . -e train` repeats a training run: same clean table version and params, same metrics.

Runs the real `mlflow run` command twice (local env manager: this interpreter), each starting its
own Spark session through jobs/train.py, against a state folder prepared in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from prescore.config import PROJECT_ROOT, Settings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_flow
from prescore.platform import registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUN_DATE = date(2026, 11, 4)


def mlflow_run(settings: Settings, usecase: UseCase) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` = this venv
        "PRESCORE_STATE_DIR": str(settings.state_dir),
        "PRESCORE_ENV": "test",
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    command = [
        f"{bin_dir}/mlflow", "run", str(PROJECT_ROOT), "-e", "train", "--env-manager", "local",
        "--experiment-name", registry.model_name(settings, usecase),
        "-P", f"usecase={usecase.name}", "-P", f"run_date={RUN_DATE.isoformat()}",
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def test_mlflow_run_repeats_a_training_run_with_the_same_metrics(
    spark: SparkSession, settings: Settings, churn: UseCase, tmp_path: Path
) -> None:
    state = settings.model_copy(update={"state_dir": tmp_path / "state"})
    write_landing(state, churn, RUN_DATE, rows=600)
    run_flow(RunContext(state, churn, RUN_DATE, spark), ("ingest", "validate", "clean"))
    registry.client(state)
    experiment = registry.experiment_id(state, churn)  # artifacts under the state folder

    for _ in range(2):
        done = mlflow_run(state, churn)
        assert done.returncode == 0, done.stderr[-3000:]

    client = registry.client(state)
    runs = client.search_runs([experiment], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    first, second = runs
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.project.entryPoint"] == "train"
        assert run.data.tags["run_date"] == RUN_DATE.isoformat()
        assert run.data.params["run_date"] == RUN_DATE.isoformat()  # the MLproject parameter
    assert first.data.tags["clean_table_version"] == second.data.tags["clean_table_version"]
    model_params = {k: v for k, v in first.data.params.items() if k in churn.model.params}
    assert model_params and all(second.data.params[k] == v for k, v in model_params.items())
    test_metrics = {k: v for k, v in first.data.metrics.items() if k.startswith("test_")}
    assert set(test_metrics) == {
        "test_auc",
        "test_pr_auc",
        "test_log_loss",
        "test_accuracy",
        "test_f1",
    }
    for name, value in test_metrics.items():
        assert second.data.metrics[name] == pytest.approx(value, abs=1e-9)
    # The second run met the first as champion on the same split: the same numbers again.
    assert second.data.metrics["champion_test_auc"] == pytest.approx(test_metrics["test_auc"])
