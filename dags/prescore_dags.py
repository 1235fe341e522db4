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

Wiring only, so it is cheap to parse: this file reads the YAML config and builds the DAGs from
the operator, macro, alert and drift task of prescore.platform.airflow_tasks. It never imports
pyspark, mlflow, xgboost or great_expectations; the stage jobs do, under spark-submit.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, chain

from prescore.config import Settings, UseCase, load_settings, load_usecases
from prescore.flow import STAGES
from prescore.platform.airflow_tasks import (
    StageSubmitOperator,
    alert_on_failure,
    drift_signal,
    run_date,
)
from prescore.platform.spark import JAR_KEYS, jars_packages, source_packages, spark_conf

log = logging.getLogger("prescore.airflow")

# The DAG file sits in <project>/dags; the stage entry files in <project>/jobs, conf in <project>/conf.
PROJECT_DIR = Path(__file__).resolve().parents[1]
JOBS_DIR = PROJECT_DIR / "jobs"

TRAIN_STAGES = ("train",)
SCORE_STAGES = tuple(stage for stage in STAGES if stage not in TRAIN_STAGES)

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


# ---------------------------------------------------------------- tasks and DAGs


def submit_conf(settings: Settings, packages: Sequence[str] = ()) -> dict[str, str]:
    """Spark settings for spark-submit; the jars (Delta, a JDBC driver) go through `packages`,
    which the task turns into local `jars` when it runs (StageSubmitOperator). Computed for the
    same packages, so the settings that follow the jars (the S3 commit guard) match them."""
    return {k: v for k, v in spark_conf(settings, packages).items() if k not in JAR_KEYS}


def stage_task(
    stage: str, usecase: UseCase, settings: Settings, **kwargs: Any
) -> StageSubmitOperator:
    """The task that runs jobs/<stage>.py for the use case and the run's day."""
    local_binary = _LOCAL_SPARK_SUBMIT.is_file()
    packages = source_packages(usecase)
    return StageSubmitOperator(
        task_id=stage,
        application=str(JOBS_DIR / f"{stage}.py"),
        application_args=["--usecase", usecase.name, "--run-date", RUN_DATE_ARG],
        conn_id="spark_default",
        packages=jars_packages(settings, packages),
        jars=settings.spark.conf.get("spark.jars"),  # the jars conf names, if any
        conf=submit_conf(settings, packages),
        name=f"prescore-{usecase.name}-{stage}",
        project_dir=str(PROJECT_DIR),
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
