"""Airflow DAGs: one `prescore_<usecase>` DAG per file in conf/usecases/, six spark-submit tasks.

Wiring only, so it is cheap to parse: this file reads the YAML config and builds operators. It never
imports pyspark, mlflow, xgboost or great_expectations; the stage jobs do, under spark-submit.
Each task runs `jobs/<stage>.py --usecase U --run-date {{ ds }}`, so a run works on its logical
date only and rerunning a date replaces that date's output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from prescore.config import Settings, UseCase, list_usecases, load_settings, load_usecase
from prescore.flow import STAGES
from prescore.spark import delta_package, spark_conf

if TYPE_CHECKING:
    from airflow.sdk import Context

# The DAG file sits in <project root>/dags; the stage entry files in <project root>/jobs.
JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"

# The environment a job sees: prescore's settings and secrets, MLflow's settings and credentials.
PASSED_PREFIXES = ("PRESCORE_", "MLFLOW_")
SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN")

# pyspark installs a spark-submit next to the interpreter; its launcher script finds Spark (and
# runs the driver) with $PYSPARK_PYTHON, else `python3` from PATH, which may lack pyspark.
_LOCAL_SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")

DEFAULT_ARGS = {
    "owner": "prescore",
    "retries": int(os.environ.get("PRESCORE_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,  # Airflow 3.3: a multiplier; True would mean a constant delay
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=3),
}


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables passed on to a stage job: every PRESCORE_* and MLFLOW_* one."""
    return {name: value for name, value in environ.items() if name.startswith(PASSED_PREFIXES)}


class StageSubmitOperator(SparkSubmitOperator):
    """spark-submit one stage job, with the job environment read when the task runs.

    Reading it at run time, not at parse time, keeps secrets (PRESCORE_HMAC_KEY, MLflow
    credentials) out of the serialized DAG and out of the rendered-template records in the
    metadata database, and lets a worker's environment win over the DAG processor's.
    """

    def __init__(self, *, pyspark_python: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pyspark_python = pyspark_python

    def execute(self, context: Context) -> None:
        from airflow.sdk.log import mask_secret

        env = job_environment(os.environ)
        for name, value in env.items():
            if any(marker in name for marker in SECRET_MARKERS):
                mask_secret(value, name)
        if self.pyspark_python and "PYSPARK_PYTHON" not in os.environ:
            env["PYSPARK_PYTHON"] = self.pyspark_python
        self.env_vars = {**env, **(self.env_vars or {})}
        super().execute(context)


def submit_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for spark-submit; the Delta jar goes through `packages` instead."""
    return {k: v for k, v in spark_conf(settings).items() if k != "spark.jars.packages"}


def build_dag(usecase: UseCase, settings: Settings) -> DAG:
    """ingest >> validate >> clean >> train >> score >> publish for one use case."""
    local_binary = _LOCAL_SPARK_SUBMIT.is_file()
    with DAG(
        dag_id=f"prescore_{usecase.name}",
        description=usecase.description or f"prescore flow for {usecase.name}",
        doc_md=__doc__,
        # Daily data intervals: the run that starts at midnight UTC works on the day that just
        # ended, and {{ ds }} is that day (Airflow 3's plain "@daily" would give the new day).
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["prescore", usecase.name, usecase.task],
    ) as dag:
        tasks = [
            StageSubmitOperator(
                task_id=stage,
                application=str(JOBS_DIR / f"{stage}.py"),
                application_args=["--usecase", usecase.name, "--run-date", "{{ ds }}"],
                conn_id="spark_default",
                packages=delta_package(),
                conf=submit_conf(settings),
                name=f"prescore-{usecase.name}-{stage}",
                spark_binary=str(_LOCAL_SPARK_SUBMIT) if local_binary else None,
                pyspark_python=sys.executable if local_binary else None,
            )
            for stage in STAGES
        ]
        chain(*tasks)
    return dag


def build_dags() -> dict[str, DAG]:
    settings = load_settings()
    dags = {}
    for name in list_usecases(settings):
        dag = build_dag(load_usecase(name, settings), settings)
        dags[dag.dag_id] = dag
    return dags


# Airflow collects DAG objects from module globals.
globals().update(build_dags())
