"""The Airflow DAGs: they import cleanly, one per use case, six spark-submit tasks in order."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import CronDataIntervalTimetable
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DataInterval, TimeRestriction

from prescore.config import list_usecases, load_settings
from prescore.spark import delta_package

pytestmark = pytest.mark.dag

EXPECTED_TASKS = ["ingest", "validate", "clean", "train", "score", "publish"]
HEAVY_MODULES = ["pyspark", "mlflow", "xgboost", "great_expectations"]
RUN_DATE = "2026-11-01"


def _dagbag(dags_dir: Path) -> DagBag:
    return DagBag(dag_folder=str(dags_dir))


@pytest.fixture(scope="module")
def dagbag(dags_dir: Path) -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv(
            "PRESCORE_TASK_RETRIES", raising=False
        )  # the default retries, not a local override
        yield _dagbag(dags_dir)


@pytest.fixture(scope="module")
def usecases() -> list[str]:
    return list_usecases(load_settings())


def _dags(dagbag: DagBag) -> list[Any]:
    return [dagbag.dags[dag_id] for dag_id in sorted(dagbag.dags)]


def test_dag_folder_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found in dags/"


def test_one_dag_per_usecase(dagbag: DagBag, usecases: list[str]) -> None:
    assert usecases, "conf/usecases/ holds no use case"
    assert sorted(dagbag.dags) == sorted(f"prescore_{name}" for name in usecases)


def test_tasks_run_the_stages_in_a_line(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        assert sorted(dag.task_ids) == sorted(EXPECTED_TASKS), dag.dag_id
        for before, after in itertools.pairwise(EXPECTED_TASKS):
            assert dag.get_task(after).upstream_task_ids == {before}, (dag.dag_id, after)
            assert dag.get_task(before).downstream_task_ids == {after}, (dag.dag_id, before)
        assert dag.get_task(EXPECTED_TASKS[0]).upstream_task_ids == set()
        assert dag.get_task(EXPECTED_TASKS[-1]).downstream_task_ids == set()


def test_each_task_submits_its_stage_job_for_the_logical_date(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        usecase = dag.dag_id.removeprefix("prescore_")
        for task in dag.tasks:
            assert Path(task.application).is_file(), task.application
            assert Path(task.application).name == f"{task.task_id}.py"
            assert task.application_args == ["--usecase", usecase, "--run-date", "{{ ds }}"]
            rendered = task.render_template(task.application_args, {"ds": RUN_DATE})
            assert rendered == ["--usecase", usecase, "--run-date", RUN_DATE]


def test_each_task_brings_delta_through_spark_submit(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        for task in dag.tasks:
            assert task.packages == delta_package()
            assert "spark.jars.packages" not in task.conf
            assert task.conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
            assert task._conn_id == "spark_default"


def test_schedule_retries_and_start_date(dags_dir: Path, dagbag: DagBag) -> None:
    reparsed = _dagbag(dags_dir)  # a start_date built from now() would differ between parses
    for dag in _dags(dagbag):
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert dag.timetable.expression == "0 0 * * *"
        assert "prescore" in dag.tags
        assert dag.start_date == reparsed.dags[dag.dag_id].start_date
        assert dag.start_date.tzinfo is not None
        assert dag.default_args["retries"] == 2
        for task in dag.tasks:
            assert task.retries == 2
            assert task.retry_exponential_backoff > 1  # a multiplier in Airflow 3.3


def test_scheduled_run_works_on_the_day_that_just_ended(dagbag: DagBag) -> None:
    """The run starting at midnight on 11-02 has logical date, and so {{ ds }}, 11-01."""
    day = pendulum.instance(datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00"))
    previous = DataInterval(day.subtract(days=1), day)
    for dag in _dags(dagbag):
        info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
            last_automated_data_interval=previous,
            restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
        )
        assert info is not None
        assert info.logical_date == day
        assert info.run_after == day.add(days=1)


def test_retries_can_be_lowered_from_the_environment(
    dags_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESCORE_TASK_RETRIES", "0")
    bag = _dagbag(dags_dir)
    assert {task.retries for dag in bag.dags.values() for task in dag.tasks} == {0}


def test_task_passes_prescore_and_mlflow_env_at_run_time_only(
    dagbag: DagBag, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets reach spark-submit's environment, but never the serialized DAG."""
    secret = "hmac-secret-for-test-only"
    monkeypatch.setenv("PRESCORE_HMAC_KEY", secret)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///tmp/mlflow.db")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[*]"}')
    submitted: dict[str, Any] = {}

    def record_submit(hook: SparkSubmitHook, application: str = "", **_: Any) -> None:
        submitted["cmd"] = hook._build_spark_submit_command(application)
        submitted["env"] = dict(hook._env or {})

    monkeypatch.setattr(SparkSubmitHook, "submit", record_submit)
    dag = dagbag.dags[sorted(dagbag.dags)[0]]
    # What the DAG processor stores in the metadata database, and the UI shows.
    serialized = json.dumps(DagSerialization.to_dict(dag), default=str)
    task = dag.get_task("ingest")
    assert isinstance(task, SparkSubmitOperator)
    task.application_args = task.render_template(task.application_args, {"ds": RUN_DATE})
    task.execute(context={})

    env, cmd = submitted["env"], submitted["cmd"]
    assert env["PRESCORE_HMAC_KEY"] == secret
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///tmp/mlflow.db"
    assert "UNRELATED_SETTING" not in env
    assert cmd[cmd.index("--master") + 1] == "local[*]"
    assert cmd[cmd.index("--packages") + 1] == delta_package()
    assert cmd[-5:] == [
        task.application,
        "--usecase",
        task.application_args[1],
        "--run-date",
        RUN_DATE,
    ]
    assert secret not in serialized


def test_dag_file_parses_without_heavy_imports(dags_dir: Path) -> None:
    """The DAG processor parses the file every few minutes: no Spark, MLflow, XGBoost or GE."""
    probe = textwrap.dedent(
        f"""
        import importlib.util, json, sys, time
        import airflow.sdk
        from airflow.configuration import conf
        started = time.perf_counter()
        path = {str(dags_dir / "prescore_dags.py")!r}
        spec = importlib.util.spec_from_file_location("prescore_dags", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(json.dumps({{
            "seconds": time.perf_counter() - started,
            "timeout": conf.getfloat("core", "dagbag_import_timeout"),
            "heavy": sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY_MODULES!r})),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    # Airflow gives up on a file after dagbag_import_timeout; stay well inside it.
    assert report["seconds"] < report["timeout"] / 3, report


def test_demo_run_date_is_on_or_after_start_date(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        assert dag.start_date <= datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")
