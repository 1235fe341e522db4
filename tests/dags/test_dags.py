"""The Airflow DAGs: they import cleanly, two per use case, wired by assets, alerting on failure."""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.assets import AssetOrTimeSchedule as CoreAssetOrTimeSchedule
from airflow.timetables.base import DataInterval, TimeRestriction

from prescore.config import AirflowSettings, ScheduleSettings, list_usecases, load_settings
from prescore.platform.airflow_tasks import submitted_jars
from prescore.platform.jars import CLASS_PATH_VARIABLE, JARS_VARIABLE, store_jars
from prescore.platform.spark import delta_package
from support import webhook_server

pytestmark = pytest.mark.dag

SCORE_TASKS = ["ingest", "validate", "clean", "score", "publish", "monitor"]
TRAIN_TASKS = ["train"]
# Tasks off the line: each one's only upstream task (a leaf).
BRANCHES = {"score": {"retention": "clean"}, "train": {}}
HEAVY_MODULES = ["pyspark", "mlflow", "xgboost", "great_expectations"]
RUN_DATE = "2026-11-01"
# The DAG processor re-parses the file every few minutes; well under Airflow's 30 s timeout.
MAX_PARSE_SECONDS = 2.0


def _dagbag(dags_dir: Path) -> DagBag:
    return DagBag(dag_folder=str(dags_dir))


@pytest.fixture(scope="module")
def dagbag(dags_dir: Path) -> Iterator[DagBag]:
    with pytest.MonkeyPatch.context() as env:
        # The configured retries and no webhook, not a local override.
        env.delenv("PRESCORE_TASK_RETRIES", raising=False)
        env.delenv("PRESCORE_ALERT_WEBHOOK", raising=False)
        yield _dagbag(dags_dir)


@pytest.fixture(scope="module")
def usecases() -> list[str]:
    return list_usecases(load_settings())


def _dags(dagbag: DagBag) -> list[Any]:
    return [dagbag.dags[dag_id] for dag_id in sorted(dagbag.dags)]


def _kind(dag: Any) -> str:
    return str(dag.dag_id.rsplit("_", 1)[1])


def _usecase(dag: Any) -> str:
    return str(dag.dag_id.removeprefix("prescore_").rsplit("_", 1)[0])


def _dag_run(logical_date: datetime | None, run_after: datetime) -> SimpleNamespace:
    """The parts of the context's dag_run the run_date macro reads."""
    return SimpleNamespace(logical_date=logical_date, run_after=run_after)


def _render(task: Any, dag_run: SimpleNamespace) -> list[str]:
    return list(task.render_template(task.application_args, {"dag_run": dag_run}))


def test_dag_folder_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found in dags/"


def test_a_score_and_a_train_dag_per_usecase(dagbag: DagBag, usecases: list[str]) -> None:
    assert usecases, "conf/usecases/ holds no use case"
    expected = [f"prescore_{name}_{kind}" for name in usecases for kind in ("score", "train")]
    assert sorted(dagbag.dags) == sorted(expected)


@pytest.mark.parametrize(("kind", "expected"), [("score", SCORE_TASKS), ("train", TRAIN_TASKS)])
def test_tasks_run_the_stages_in_a_line(dagbag: DagBag, kind: str, expected: list[str]) -> None:
    """The stages in a line, and each branch (retention) hanging off its one upstream stage."""
    branches = BRANCHES[kind]
    for dag in (d for d in _dags(dagbag) if _kind(d) == kind):
        assert sorted(dag.task_ids) == sorted([*expected, *branches]), dag.dag_id
        for before, after in itertools.pairwise(expected):
            assert dag.get_task(after).upstream_task_ids == {before}, (dag.dag_id, after)
            below = {after} | {b for b, up in branches.items() if up == before}
            assert dag.get_task(before).downstream_task_ids == below, (dag.dag_id, before)
        for branch, upstream in branches.items():
            assert dag.get_task(branch).upstream_task_ids == {upstream}, (dag.dag_id, branch)
            assert dag.get_task(branch).downstream_task_ids == set(), (dag.dag_id, branch)
        assert dag.get_task(expected[0]).upstream_task_ids == set()
        assert dag.get_task(expected[-1]).downstream_task_ids == set()


def test_each_task_submits_its_stage_job_for_the_logical_date(dagbag: DagBag) -> None:
    logical = datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")
    for dag in _dags(dagbag):
        usecase = _usecase(dag)
        for task in dag.tasks:
            assert Path(task.application).is_file(), task.application
            assert Path(task.application).name == f"{task.task_id}.py"
            rendered = _render(task, _dag_run(logical, logical + timedelta(days=1, minutes=5)))
            assert rendered == ["--usecase", usecase, "--run-date", RUN_DATE]


def test_a_run_without_logical_date_works_on_the_day_before_it_was_queued(dagbag: DagBag) -> None:
    """Asset-triggered runs have no logical date in Airflow 3: they take the last whole UTC day."""
    queued = datetime(2026, 11, 2, 0, 7, tzinfo=UTC)
    late_evening = datetime(2026, 11, 2, 23, 30, tzinfo=pendulum.timezone("America/New_York"))
    for dag in _dags(dagbag):
        for task in dag.tasks:
            assert _render(task, _dag_run(None, queued))[-1] == RUN_DATE
            # 23:30 in New York is already 11-03 in UTC: the day before is 11-02.
            assert _render(task, _dag_run(None, late_evening))[-1] == "2026-11-02"


def test_each_task_brings_delta_through_spark_submit(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        for task in dag.tasks:
            assert task.packages.split(",")[0] == delta_package()
            assert "spark.jars.packages" not in task.conf
            assert "spark.jars" not in task.conf  # local jars are picked when the task runs
            assert task.conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
            assert task._conn_id == "spark_default"


def test_clean_and_champion_assets_link_the_two_dags(dagbag: DagBag, usecases: list[str]) -> None:
    for name in usecases:
        score, train = dagbag.dags[f"prescore_{name}_score"], dagbag.dags[f"prescore_{name}_train"]
        clean, champion = (
            Asset(f"prescore://{name}/clean"),
            Asset(f"prescore://{name}/champion"),
        )
        assert score.get_task("clean").outlets == [clean]
        assert [t.task_id for t in score.tasks if t.outlets] == ["clean"]
        assert train.get_task("train").inlets == [clean]
        assert train.get_task("train").outlets == [champion]
        # The score DAG runs on its daily timetable or after a new champion, whichever comes first.
        assert isinstance(score.timetable, AssetOrTimeSchedule)
        assert score.timetable.asset_condition == champion
        assert isinstance(score.timetable.timetable, CronDataIntervalTimetable)
        assert score.timetable.timetable.expression == "0 0 * * *"
        assert isinstance(train.timetable, CronDataIntervalTimetable)
        assert train.timetable.expression == "0 0 * * 0"


def test_asset_schedule_survives_serialization(dagbag: DagBag, usecases: list[str]) -> None:
    """What the scheduler reads back from the metadata database still listens to the champion."""
    for name in usecases:
        dag = dagbag.dags[f"prescore_{name}_score"]
        stored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
        assert isinstance(stored.timetable, CoreAssetOrTimeSchedule)
        assert [a.uri for _, a in stored.timetable.asset_condition.iter_assets()] == [
            f"prescore://{name}/champion"
        ]
        assert stored.timetable.can_be_scheduled  # the cron half still creates daily runs


def test_schedule_retries_and_start_date(dags_dir: Path, dagbag: DagBag) -> None:
    reparsed = _dagbag(dags_dir)  # a start_date built from now() would differ between parses
    airflow = load_settings().airflow
    for dag in _dags(dagbag):
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert {"prescore", _kind(dag)} <= set(dag.tags)
        assert dag.start_date == reparsed.dags[dag.dag_id].start_date
        assert dag.start_date.tzinfo is not None
        assert dag.default_args["retries"] == 2
        assert dag.default_args["retry_delay"] == timedelta(seconds=airflow.retry_delay_seconds)
        assert dag.default_args["max_retry_delay"] == timedelta(
            seconds=airflow.max_retry_delay_seconds
        )
        for task in dag.tasks:
            assert task.retries == 2
            assert task.retry_exponential_backoff > 1  # a multiplier in Airflow 3.3


@pytest.mark.parametrize(
    ("kind", "interval"),
    [
        # The daily run starting at midnight on 11-02 works on 11-01, its {{ ds }}.
        ("score", timedelta(days=1)),
        # The weekly run starting on Sunday 11-08 works on the week from Sunday 11-01.
        ("train", timedelta(weeks=1)),
    ],
)
def test_scheduled_run_works_on_the_interval_that_just_ended(
    dagbag: DagBag, kind: str, interval: timedelta
) -> None:
    day = pendulum.instance(datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00"))
    for dag in (d for d in _dags(dagbag) if _kind(d) == kind):
        timetable = coerce_to_core_timetable(dag.timetable)
        info = timetable.next_dagrun_info(
            last_automated_data_interval=DataInterval(day - interval, day),
            restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
        )
        assert info is not None
        assert info.logical_date == day
        assert info.run_after == day + interval


def test_retries_can_be_lowered_from_the_environment(
    dags_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESCORE_TASK_RETRIES", "0")
    bag = _dagbag(dags_dir)
    assert {task.retries for dag in bag.dags.values() for task in dag.tasks} == {0}


def test_task_passes_prescore_and_mlflow_env_at_run_time_only(
    dagbag: DagBag, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Secrets reach spark-submit's environment, but never the serialized DAG."""
    secret = "hmac-secret-for-test-only"
    monkeypatch.setenv("PRESCORE_HMAC_KEY", secret)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///tmp/mlflow.db")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[*]"}')
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "no-jars"))  # nothing resolved: --packages
    monkeypatch.setenv("PRESCORE_CACHE_DIR", str(tmp_path / "cache"))
    submitted: dict[str, Any] = {}

    def record_submit(hook: SparkSubmitHook, application: str = "", **_: Any) -> None:
        submitted["cmd"] = hook._build_spark_submit_command(application)
        submitted["env"] = dict(hook._env or {})

    monkeypatch.setattr(SparkSubmitHook, "submit", record_submit)
    dag = next(d for d in _dags(dagbag) if _kind(d) == "score")
    # What the DAG processor stores in the metadata database, and the UI shows.
    serialized = json.dumps(DagSerialization.to_dict(dag), default=str)
    task = dag.get_task("clean")
    assert isinstance(task, SparkSubmitOperator)
    logical = datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")
    task.application_args = _render(task, _dag_run(logical, logical))
    outlet_events: dict[Any, Any] = {asset: SimpleNamespace(extra={}) for asset in task.outlets}
    task.execute(context={"outlet_events": outlet_events})  # type: ignore[arg-type]

    env, cmd = submitted["env"], submitted["cmd"]
    assert env["PRESCORE_HMAC_KEY"] == secret
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///tmp/mlflow.db"
    assert "UNRELATED_SETTING" not in env
    assert cmd[cmd.index("--master") + 1] == "local[*]"
    assert cmd[cmd.index("--packages") + 1] == delta_package()
    assert cmd[-5:] == [task.application, "--usecase", _usecase(dag), "--run-date", RUN_DATE]
    assert secret not in serialized
    # The clean asset's event says which day's clean data is new.
    assert [e.extra for e in outlet_events.values()] == [{"run_date": RUN_DATE}]


def _submitted_command(
    task: Any, monkeypatch: pytest.MonkeyPatch, master: str = "local[2]"
) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command the task runs on `master`, and the environment it adds (the
    submit itself recorded, not run)."""
    conn = json.dumps({"conn_type": "spark", "host": master})
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", conn)
    submitted: dict[str, Any] = {}

    def record_submit(hook: SparkSubmitHook, application: str = "", **_: Any) -> None:
        submitted["cmd"] = hook._build_spark_submit_command(application)
        submitted["env"] = hook._env_vars

    monkeypatch.setattr(SparkSubmitHook, "submit", record_submit)
    logical = datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")
    declared = task.application_args
    task.application_args = _render(task, _dag_run(logical, logical))
    try:
        task.execute(context={"outlet_events": None})
    finally:
        task.application_args = declared
    return submitted["cmd"], submitted["env"]


@pytest.mark.parametrize(
    ("resolved", "master"),
    [(True, "local[2]"), (True, "spark://host:7077"), (False, "local[2]")],
    ids=["jars-resolved-local", "jars-resolved-cluster", "not-resolved"],
)
def test_a_task_submits_the_local_jars_resolved_at_setup_else_the_packages(
    dagbag: DagBag, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resolved: bool, master: str
) -> None:
    """No Ivy resolution per task when setup resolved exactly the task's packages: a cluster's
    executors fetch the jars (--jars); a local master's one JVM has them on its class path."""
    store = tmp_path / "jars"
    monkeypatch.setenv(JARS_VARIABLE, str(store))
    monkeypatch.setenv("PRESCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(CLASS_PATH_VARIABLE, "/opt/hadoop/lib/*")  # a Hadoop-free Spark's
    task = next(d for d in _dags(dagbag) if _kind(d) == "score").get_task("score")
    if resolved:
        fakes = [tmp_path / "io.delta_delta-spark.jar", tmp_path / "io.delta_delta-storage.jar"]
        for fake in fakes:
            fake.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
        store_jars(task.packages, fakes)
        store_jars("io.delta:other:1.0", fakes[:1])  # another set: not the task's
    cmd, env = _submitted_command(task, monkeypatch, master)
    stored = [str(store / "files" / fake.name) for fake in fakes] if resolved else []

    if resolved and master.startswith("local"):
        assert "--packages" not in cmd and "--jars" not in cmd
        assert env[CLASS_PATH_VARIABLE] == ":".join(["/opt/hadoop/lib/*", *stored])
    elif resolved:
        assert "--packages" not in cmd and CLASS_PATH_VARIABLE not in env
        assert cmd[cmd.index("--jars") + 1].split(",") == stored
    else:
        assert "--jars" not in cmd and CLASS_PATH_VARIABLE not in env
        assert cmd[cmd.index("--packages") + 1] == task.packages
    assert task.packages.split(",")[0] == delta_package()  # the task keeps its coordinates
    bundle = Path(cmd[cmd.index("--py-files") + 1])
    assert bundle.parent == tmp_path / "cache" / "bundles"
    assert bundle.name.startswith("prescore-") and bundle.is_file()
    again, _ = _submitted_command(task, monkeypatch, master)
    assert again[cmd.index("--py-files") + 1] == str(bundle)


@pytest.mark.parametrize("dag_file", ["prescore_dags.py", "prescore_config_check.py"])
def test_dag_file_parses_fast_without_heavy_imports(dags_dir: Path, dag_file: str) -> None:
    """The DAG processor parses each file every few minutes: no Spark, MLflow, XGBoost or GE."""
    probe = textwrap.dedent(
        f"""
        import importlib.util, json, sys, time
        import airflow.sdk
        from airflow.configuration import conf
        started = time.perf_counter()
        path = {str(dags_dir / dag_file)!r}
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
    print(f"\nDAG file parse time (airflow.sdk already imported): {report}")
    assert report["heavy"] == []
    assert report["seconds"] < min(MAX_PARSE_SECONDS, report["timeout"] / 3), report


@pytest.mark.parametrize("bad", [{"score": "every day"}, {"train": "0 0 * *"}, {"train": ""}])
def test_a_schedule_that_is_not_cron_fails_at_load(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="String should match pattern"):
        ScheduleSettings.model_validate(bad)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", None),
        ("https://hooks.example.com/x", "https://hooks.example.com/x"),
        ("ftp://x", ValueError),
    ],
)
def test_alert_webhook_is_off_when_empty_and_must_be_http(url: str, expected: Any) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError, match="http"):
            AirflowSettings(alert_webhook_url=url)
    else:
        assert AirflowSettings(alert_webhook_url=url).alert_webhook_url == expected


def test_demo_run_date_is_on_or_after_start_date(dagbag: DagBag) -> None:
    for dag in _dags(dagbag):
        assert dag.start_date <= datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")


# ---------------------------------------------------------------- failure alerts


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_server() as server:
        yield server


def _failure_context(dag_id: str, task_id: str) -> dict[str, Any]:
    logical = datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00")
    return {
        "ti": SimpleNamespace(
            dag_id=dag_id, task_id=task_id, run_id="manual__x", try_number=3, log_url="http://af/x"
        ),
        "dag_run": _dag_run(logical, logical + timedelta(days=1)),
        "exception": RuntimeError("validate: 2 critical expectations failed"),
    }


def _callback(dagbag: DagBag) -> Any:
    dag = dagbag.dags[sorted(dagbag.dags)[0]]
    callback = dag.default_args["on_failure_callback"]
    for task in dag.tasks:
        assert callback in task.on_failure_callback, task.task_id
    return callback


def test_failure_callback_posts_the_failure_to_the_webhook(
    dagbag: DagBag,
    webhook: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = webhook
    monkeypatch.setenv("PRESCORE_ALERT_WEBHOOK", url)  # read when the task fails, not at parse
    caplog.set_level(logging.INFO)
    _callback(dagbag)(_failure_context("prescore_churn_score", "validate"))

    assert len(received) == 1
    assert received[0]["path"] == "/hooks/prescore"
    assert received[0]["content_type"] == "application/json"
    assert received[0]["body"] == {
        "event": "prescore_task_failed",
        "dag_id": "prescore_churn_score",
        "task_id": "validate",
        "run_id": "manual__x",
        "logical_date": f"{RUN_DATE}T00:00:00+00:00",
        "run_date": RUN_DATE,
        "try_number": 3,
        "exception": "validate: 2 critical expectations failed",
        "log_url": "http://af/x",
    }
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("prescore_churn_score" in m and "critical expectations" in m for m in failed)


def test_failure_callback_only_logs_without_a_webhook(
    dagbag: DagBag,
    webhook: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, received = webhook
    monkeypatch.delenv("PRESCORE_ALERT_WEBHOOK", raising=False)
    caplog.set_level(logging.INFO)
    _callback(dagbag)(_failure_context("prescore_churn_train", "train"))
    assert received == []
    assert any("prescore_churn_train" in r.getMessage() for r in caplog.records)


def test_failure_callback_never_raises_when_the_webhook_is_down(
    dagbag: DagBag, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nobody listens on: bind one, note it, close it.
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    monkeypatch.setenv("PRESCORE_ALERT_WEBHOOK", f"http://127.0.0.1:{port}/down")
    started = time.perf_counter()
    _callback(dagbag)(_failure_context("prescore_churn_score", "publish"))
    _callback(dagbag)({})  # nor on a context without the usual keys
    assert time.perf_counter() - started < 10  # refused at once, at worst the configured timeout
    assert any("could not be sent" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- retraining on drift


def _dag_module(dags_dir: Path) -> Any:
    """dags/prescore_dags.py as a module, to build a DAG from a changed use case."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "prescore_dags_probe", dags_dir / "prescore_dags.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def retraining(dags_dir: Path) -> tuple[Any, Any, Any]:
    """(the DAG module, score DAG, train DAG) of churn with monitoring.retrain_on_drift on."""
    from prescore.config import load_usecase

    module = _dag_module(dags_dir)
    settings = load_settings()
    churn = load_usecase("churn", settings)
    usecase = churn.model_copy(
        update={"monitoring": churn.monitoring.model_copy(update={"retrain_on_drift": True})}
    )
    return (
        module,
        module.build_score_dag(usecase, settings),
        module.build_train_dag(usecase, settings),
    )


def test_without_retrain_on_drift_there_is_no_drift_task(dagbag: DagBag) -> None:
    assert "drift" not in dagbag.dags["prescore_churn_score"].task_ids
    assert isinstance(dagbag.dags["prescore_churn_train"].timetable, CronDataIntervalTimetable)


def test_retrain_on_drift_adds_a_drift_task_that_triggers_training(
    retraining: tuple[Any, Any, Any],
) -> None:
    _, score, train = retraining
    drift = Asset("prescore://churn/drift")
    assert score.get_task("drift").upstream_task_ids == {"monitor"}
    assert score.get_task("drift").outlets == [drift]
    rendered = score.get_task("drift").render_template(
        score.get_task("drift").op_args,
        {
            "dag_run": _dag_run(
                datetime.fromisoformat(f"{RUN_DATE}T00:00:00+00:00"), datetime.now(UTC)
            )
        },
    )
    assert list(rendered) == ["churn", RUN_DATE]
    assert isinstance(train.timetable, AssetOrTimeSchedule)
    assert train.timetable.asset_condition == drift
    assert train.timetable.timetable.expression == "0 0 * * 0"
    stored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(train))
    assert [a.uri for _, a in stored.timetable.asset_condition.iter_assets()] == [drift.uri]


def test_drift_task_skips_unless_a_threshold_was_crossed(
    spark: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It reads monitoring_<usecase> with DuckDB: a skipped task emits no asset event."""
    from datetime import date

    from airflow.sdk.exceptions import AirflowSkipException

    from prescore.catalog import MONITORING_SCHEMA as SCHEMA
    from prescore.platform import tables
    from prescore.platform.airflow_tasks import drift_signal

    monkeypatch.setenv("PRESCORE_STATE_DIR", str(tmp_path / "state"))
    settings = load_settings()
    day1, day2 = date(2026, 11, 1), date(2026, 11, 2)
    for day, breached in ((day1, False), (day2, True)):
        row = (
            "churn",
            day,
            "feature_psi",
            "monthly_charges",
            0.9,
            0.25,
            breached,
            10,
            10,
            "",
            "",
            datetime.now(),
        )
        tables.replace_run(spark.createDataFrame([row], SCHEMA), settings, "monitoring_churn", day)
    with pytest.raises(AirflowSkipException, match="no threshold crossed"):
        drift_signal("churn", day1.isoformat())
    assert drift_signal("churn", day2.isoformat()) == ["feature_psi:monthly_charges"]


def test_a_jdbc_source_brings_its_driver_to_every_task(
    dags_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The driver's jar must be in the session when it starts: spark-submit --packages, or the
    local jars setup resolved for Delta and the driver together."""
    from prescore.config import load_usecase

    store, other = tmp_path / "jars", tmp_path / "other-jars"
    monkeypatch.setenv(JARS_VARIABLE, str(store))
    delta_jar, driver_jar = tmp_path / "delta.jar", tmp_path / "sqlite-jdbc.jar"
    delta_jar.write_bytes(b"delta")
    driver_jar.write_bytes(b"driver")

    module = _dag_module(dags_dir)
    settings = load_settings()
    churn = load_usecase("churn", settings)
    driver = "org.xerial:sqlite-jdbc:3.54.1.0"
    usecase = churn.model_copy(
        update={"source": churn.source.model_copy(update={"driver_package": driver})}
    )
    for dag in (
        module.build_score_dag(usecase, settings),
        module.build_train_dag(usecase, settings),
    ):
        for task in dag.tasks:
            if hasattr(task, "packages"):
                assert task.packages.split(",") == [delta_package(), driver], task.task_id
                # Resolved at setup, the driver's jar is among the local jars spark-submit gets.
                store_jars(task.packages, [delta_jar, driver_jar], store)
                assert submitted_jars(None, task.packages) == (
                    f"{store / 'files' / delta_jar.name},{store / 'files' / driver_jar.name}",
                    None,
                )
                # Delta alone resolved is not the task's set: it resolves its packages.
                store_jars(delta_package(), [delta_jar], other)
                monkeypatch.setenv(JARS_VARIABLE, str(other))
                assert submitted_jars(None, task.packages) == (None, task.packages)
                monkeypatch.setenv(JARS_VARIABLE, str(store))
