"""Airflow's side of the package: the stage task's operator, the run_date macro, the failure
alert and the drift task. The DAG file (dags/prescore_dags.py) only wires them.

Imported when Airflow parses the DAG file, so it stays light: no pyspark, mlflow, xgboost or
great_expectations at import time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from prescore.config import HOME_VARIABLE, load_settings, load_usecase
from prescore.platform import alerts, tables
from prescore.platform.bundle import cached_bundle
from prescore.platform.jars import local_jars, local_master, on_class_path

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger("prescore.airflow")

# The environment a job sees: prescore's settings and secrets, MLflow's settings and credentials.
PASSED_PREFIXES = ("PRESCORE_", "MLFLOW_")
SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def run_date(dag_run: Any) -> str:
    """The day a run works on: its logical date, else the last whole UTC day before it was due.

    Scheduled and `dags test` runs have a logical date; asset-triggered runs (and manual runs
    started without one) do not, and then the day before `run_after` is the day the latest
    scheduled daily run worked on.
    """
    if dag_run.logical_date is not None:
        return str(dag_run.logical_date.astimezone(UTC).date().isoformat())
    return str((dag_run.run_after.astimezone(UTC) - timedelta(days=1)).date().isoformat())


# ---------------------------------------------------------------- failure alerts


def failure_alert(context: Mapping[str, Any]) -> dict[str, Any]:
    """What a failed task reports: which DAG, task, run and day, which try, the error, the log."""
    ti, dag_run = context.get("ti"), context.get("dag_run")
    logical_date = getattr(dag_run, "logical_date", None)
    return {
        "event": "prescore_task_failed",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "logical_date": logical_date.isoformat() if logical_date else None,
        "run_date": run_date(dag_run) if dag_run is not None else None,
        "try_number": getattr(ti, "try_number", None),
        "exception": str(context.get("exception") or "")[:1000],
        "log_url": getattr(ti, "log_url", None),
    }


def alert_on_failure(context: Context) -> None:
    """on_failure_callback: log the failure, then POST it to the configured webhook. Never raises.

    The webhook is read from conf when a task fails, not when the file is parsed, so its URL (which
    often holds a token) stays out of the serialized DAG.
    """
    try:
        alert = failure_alert(context)
        log.error("prescore task failed: %s", json.dumps(alert))
        alerts.send(alert, load_settings().airflow)
    except Exception:
        log.exception("prescore failure alert could not be sent")


# ---------------------------------------------------------------- the stage task


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables passed on to a stage job: every PRESCORE_* and MLFLOW_* one."""
    return {name: value for name, value in environ.items() if name.startswith(PASSED_PREFIXES)}


class StageSubmitOperator(SparkSubmitOperator):
    """spark-submit one stage job, with the job environment read when the task runs, the
    prescore package as --py-files (the cached zip of the code the task runs, platform.bundle),
    and the packages as the local jars setup resolved for them (platform.jars), if any: on the
    class path of a local master's one JVM, else as --jars for the executors to fetch.

    Reading it at run time, not at parse time, keeps secrets (PRESCORE_HMAC_KEY, MLflow
    credentials) out of the serialized DAG and out of the rendered-template records in the
    metadata database, and lets a worker's environment win over the DAG processor's; the jars
    are looked up on the worker that runs spark-submit, where they must be.
    """

    def __init__(
        self, *, project_dir: str, pyspark_python: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.pyspark_python = pyspark_python

    def execute(self, context: Context) -> None:
        from airflow.sdk.log import mask_secret

        env = job_environment(os.environ)
        for name, value in env.items():
            if any(marker in name for marker in SECRET_MARKERS):
                mask_secret(value, name)
        if self.pyspark_python and "PYSPARK_PYTHON" not in os.environ:
            env["PYSPARK_PYTHON"] = self.pyspark_python
        env[HOME_VARIABLE] = self.project_dir  # the job imports prescore from the zip below
        declared = self.py_files, self.jars, self.packages, self.env_vars
        try:
            self.py_files = str(cached_bundle())  # the library travels with the job
            self.jars, self.packages = submitted_jars(self.jars, self.packages)
            if local_master(self._get_hook()._connection["master"]):  # as the hook resolves it
                self.jars, class_path = on_class_path(self.jars)
                env |= class_path
            self.env_vars = {**env, **(self.env_vars or {})}
            self._hook = None  # built from the attributes just set, not from an earlier try's
            super().execute(context)
        finally:
            self.py_files, self.jars, self.packages, self.env_vars = declared
        # Say which day the new data or model is of, for whoever reads the asset event.
        events = context.get("outlet_events")
        if events is not None and self.application_args:
            for asset in self.outlets:
                events[asset].extra = {"run_date": self.application_args[-1]}


def submitted_jars(jars: str | None, packages: str | None) -> tuple[str | None, str | None]:
    """(--jars, --packages) for spark-submit: the local jars resolved at setup for exactly these
    packages, ahead of any jars named, and no packages; else both as declared (Ivy resolves)."""
    local = local_jars(packages) if packages else None
    if local is None:
        log.info("prescore: packages not resolved at setup; spark-submit resolves %s", packages)
        return jars, packages
    return ",".join([*(str(jar) for jar in local), *filter(None, [jars])]), None


# ---------------------------------------------------------------- the drift task


def drift_signal(usecase_name: str, day: str) -> list[str]:
    """The drift task: the thresholds the monitor stage found crossed for the day (read from
    monitoring_<usecase> with DuckDB, no Spark); none: the task skips, so no drift event."""
    from airflow.sdk.exceptions import AirflowSkipException

    settings = load_settings()
    table = load_usecase(usecase_name, settings).monitoring_table
    rows = tables.read_with_duckdb(
        settings,
        table,
        ["metric", "feature"],
        where="run_date = cast(? as date) and breached",
        params=[day],
    )
    if not rows:
        raise AirflowSkipException(f"{table}: no threshold crossed on {day}")
    breaches = sorted(f"{metric}:{feature or ''}" for metric, feature in rows)
    log.warning("prescore drift on %s: %s; the train DAG is triggered", day, ", ".join(breaches))
    return breaches
