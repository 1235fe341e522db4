"""Airflow DAGs: two per file in conf/usecases/, built from conf, one spark-submit per stage.

- `prescore_<usecase>_score`: ingest >> validate >> clean >> score >> publish >> monitor, on the
  use case's `schedule.score` (default `@daily`), and also after every new model (the champion
  asset). The monitor task stores drift and realized performance and alerts over a threshold;
  it does not fail for drift (publish already happened). Beside them, clean >> retention
  deletes and vacuums raw and quarantine run dates older than the use case's `retention_days`.
- `prescore_<usecase>_train`: train, on its own `schedule.train` (default `@weekly`), on the clean
  data of its logical date, which that date's scoring run made.

Why this shape. Scoring is cheap and must follow the data every day; training is costly and has
its own cadence, so they are two DAGs. Each schedule is a `CronDataIntervalTimetable` in UTC: the
run that starts when an interval ends works on that interval, and `--run-date` is its logical date
(the day, or the first day of the week, that just ended). The two DAGs meet through Airflow assets:

- the train task's outlet `prescore://<usecase>/champion` is emitted after every successful
  training run (the first version becomes @champion; a later one may be promoted), and the score
  DAG's schedule is `AssetOrTimeSchedule(timetable=<daily>, assets=<champion>)`: Airflow 3's one
  built-in "cron or asset" schedule. So a new model reaches readers without waiting for the next
  day; rescoring with an unchanged champion only replaces the same rows.
- the clean task's outlet `prescore://<usecase>/clean` is the train task's inlet: lineage in the
  Assets view, not a trigger. The score DAG makes that data itself and scores it in the same run,
  so new clean data is scored by the task dependency; scheduling the score DAG on its own output
  would loop, and training on every clean day is what the train schedule is there to avoid.

An asset-triggered run has no logical date in Airflow 3 (no `{{ ds }}`): the `run_date` macro
gives such a run the last whole UTC day before it was queued, the day the latest daily run
worked on, so a new champion rescores and republishes that day. Every task passes
`--run-date {{ run_date(dag_run) }}`; rerunning a date replaces that date's output.

Failures: retries, retry delay (doubling up to a maximum) and the alert webhook come from the
`airflow:` block of conf/base.yaml. When a task fails for good, `alert_on_failure` logs the DAG,
task, dates and error and POSTs them as JSON to the webhook, if one is set. A failed quality gate
(validate or publish check) exits 1, so its task fails and every later task ends upstream_failed
without running: nothing is published and current.duckdb keeps pointing at the last good snapshot.

One bad use case never hides the others: a use-case file that does not load (invalid, misnamed,
or on an entity another use case has) loses its own two DAGs and nothing else. A file that raises
would lose every DAG in it, so this file does not raise for one use case; prescore_config_check.py
beside it raises instead, holding no DAG, so each broken file and its error show as an Airflow
import error (the UI's "DAG Import Errors", `airflow dags list-import-errors`) while the other
use cases keep running. A broken conf/base.yaml still fails this file: every DAG needs it.

Wiring only, so it is cheap to parse: this file reads the YAML config and builds operators. It
never imports pyspark, mlflow, xgboost or great_expectations; the stage jobs do, under spark-submit.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, chain

from prescore.config import (
    HOME_VARIABLE,
    Settings,
    UseCase,
    load_settings,
    load_usecase,
    load_usecases,
)
from prescore.flow import STAGES
from prescore.platform import alerts
from prescore.platform.bundle import cached_bundle
from prescore.platform.jars import local_jars
from prescore.platform.spark import JAR_KEYS, jars_packages, source_packages, spark_conf

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger("prescore.airflow")

# The DAG file sits in <project>/dags; the stage entry files in <project>/jobs, conf in <project>/conf.
PROJECT_DIR = Path(__file__).resolve().parents[1]
JOBS_DIR = PROJECT_DIR / "jobs"

TRAIN_STAGES = ("train",)
SCORE_STAGES = tuple(stage for stage in STAGES if stage not in TRAIN_STAGES)

# The environment a job sees: prescore's settings and secrets, MLflow's settings and credentials.
PASSED_PREFIXES = ("PRESCORE_", "MLFLOW_")
SECRET_MARKERS = ("KEY", "SECRET", "PASSWORD", "TOKEN")

# pyspark installs a spark-submit next to the interpreter; its launcher script finds Spark (and
# runs the driver) with $PYSPARK_PYTHON, else `python3` from PATH, which may lack pyspark.
_LOCAL_SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
RUN_DATE_ARG = "{{ run_date(dag_run) }}"


def clean_asset(usecase: UseCase) -> Asset:
    return Asset(f"prescore://{usecase.name}/clean")


def champion_asset(usecase: UseCase) -> Asset:
    return Asset(f"prescore://{usecase.name}/champion")


def drift_asset(usecase: UseCase) -> Asset:
    return Asset(f"prescore://{usecase.name}/drift")


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


def default_args(settings: Settings) -> dict[str, Any]:
    airflow = settings.airflow
    return {
        "owner": "prescore",
        "retries": airflow.retries,
        "retry_delay": timedelta(seconds=airflow.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,  # Airflow 3.3: a multiplier; True would mean a constant delay
        "max_retry_delay": timedelta(seconds=airflow.max_retry_delay_seconds),
        "execution_timeout": timedelta(hours=3),
        "on_failure_callback": alert_on_failure,
    }


# ---------------------------------------------------------------- operators


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables passed on to a stage job: every PRESCORE_* and MLFLOW_* one."""
    return {name: value for name, value in environ.items() if name.startswith(PASSED_PREFIXES)}


class StageSubmitOperator(SparkSubmitOperator):
    """spark-submit one stage job, with the job environment read when the task runs, the
    prescore package as --py-files (the cached zip of the code the task runs, prescore.platform.bundle),
    and the packages as the local jars setup resolved for them (prescore.platform.jars), if any.

    Reading it at run time, not at parse time, keeps secrets (PRESCORE_HMAC_KEY, MLflow
    credentials) out of the serialized DAG and out of the rendered-template records in the
    metadata database, and lets a worker's environment win over the DAG processor's; the jars
    are looked up on the worker that runs spark-submit, where they must be.
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
        env[HOME_VARIABLE] = str(PROJECT_DIR)  # the job imports prescore from the zip below
        self.env_vars = {**env, **(self.env_vars or {})}
        declared = self.py_files, self.jars, self.packages
        try:
            self.py_files = str(cached_bundle())  # the library travels with the job
            self.jars, self.packages = submitted_jars(self.jars, self.packages)
            self._hook = None  # built from the attributes just set, not from an earlier try's
            super().execute(context)
        finally:
            self.py_files, self.jars, self.packages = declared
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


def submit_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for spark-submit; the jars (Delta, a JDBC driver) go through `packages`,
    which the task turns into local `jars` when it runs (StageSubmitOperator)."""
    return {k: v for k, v in spark_conf(settings).items() if k not in JAR_KEYS}


def stage_task(
    stage: str, usecase: UseCase, settings: Settings, **kwargs: Any
) -> StageSubmitOperator:
    """The task that runs jobs/<stage>.py for the use case and the run's day."""
    local_binary = _LOCAL_SPARK_SUBMIT.is_file()
    return StageSubmitOperator(
        task_id=stage,
        application=str(JOBS_DIR / f"{stage}.py"),
        application_args=["--usecase", usecase.name, "--run-date", RUN_DATE_ARG],
        conn_id="spark_default",
        packages=jars_packages(settings, source_packages(usecase)),
        jars=settings.spark.conf.get("spark.jars"),  # the jars conf names, if any
        conf=submit_conf(settings),
        name=f"prescore-{usecase.name}-{stage}",
        spark_binary=str(_LOCAL_SPARK_SUBMIT) if local_binary else None,
        pyspark_python=sys.executable if local_binary else None,
        **kwargs,
    )


def _dag(usecase: UseCase, settings: Settings, kind: str, schedule: Any, doc: str) -> DAG:
    return DAG(
        dag_id=f"prescore_{usecase.name}_{kind}",
        description=f"{doc}: {usecase.description or usecase.name}",
        doc_md=__doc__,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(settings),
        user_defined_macros={"run_date": run_date},
        tags=["prescore", usecase.name, usecase.task, kind],
    )


def drift_signal(usecase_name: str, day: str) -> list[str]:
    """The drift task: the thresholds the monitor stage found crossed for the day (read from
    monitoring_<usecase> with DuckDB, no Spark); none: the task skips, so no drift event."""
    from airflow.sdk.exceptions import AirflowSkipException

    from prescore.platform import tables

    settings = load_settings()
    table = f"monitoring_{load_usecase(usecase_name, settings).name}"
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


def build_score_dag(usecase: UseCase, settings: Settings) -> DAG:
    """ingest >> validate >> clean >> score >> publish >> monitor, and clean >> retention: daily,
    and after every new champion; with `monitoring.retrain_on_drift`, monitor >> drift, which emits the drift asset
    only when a threshold was crossed (it skips otherwise)."""
    daily = CronDataIntervalTimetable(usecase.schedule.score, timezone="UTC")
    schedule = AssetOrTimeSchedule(timetable=daily, assets=champion_asset(usecase))
    with _dag(usecase, settings, "score", schedule, "score every key and publish") as dag:
        outlets = {"clean": [clean_asset(usecase)]}
        tasks: list[Any] = [
            stage_task(stage, usecase, settings, outlets=outlets.get(stage, []))
            for stage in SCORE_STAGES
        ]
        if usecase.monitoring.retrain_on_drift:
            tasks.append(
                PythonOperator(
                    task_id="drift",
                    python_callable=drift_signal,
                    op_args=[usecase.name, RUN_DATE_ARG],
                    outlets=[drift_asset(usecase)],
                )
            )
        chain(*tasks)
        # Beside scoring, after clean: expired raw and quarantine run dates go even when a
        # publish check fails, and never while this run's clean still reads raw.
        tasks[SCORE_STAGES.index("clean")] >> stage_task("retention", usecase, settings)
    return dag


def build_train_dag(usecase: UseCase, settings: Settings) -> DAG:
    """train on the clean data of the logical date; a new model triggers the score DAG. With
    `monitoring.retrain_on_drift`, also after the score DAG's drift task found drift."""
    weekly = CronDataIntervalTimetable(usecase.schedule.train, timezone="UTC")
    schedule: Any = weekly
    if usecase.monitoring.retrain_on_drift:
        schedule = AssetOrTimeSchedule(timetable=weekly, assets=drift_asset(usecase))
    with _dag(usecase, settings, "train", schedule, "train and register a model") as dag:
        stage_task(
            "train",
            usecase,
            settings,
            inlets=[clean_asset(usecase)],
            outlets=[champion_asset(usecase)],
        )
    return dag


def build_dags() -> dict[str, DAG]:
    """The two DAGs of every valid use case. An invalid use-case file loses only its own DAGs:
    it is logged here, and prescore_config_check.py reports it as an Airflow import error."""
    settings = load_settings()
    loaded = load_usecases(settings)
    for error in loaded.errors.values():
        log.error("prescore: use case skipped, its DAGs are not built: %s", error)
    dags = {}
    for usecase in loaded.usecases.values():
        for dag in (build_score_dag(usecase, settings), build_train_dag(usecase, settings)):
            dags[dag.dag_id] = dag
    return dags


# Airflow collects DAG objects from module globals.
globals().update(build_dags())
