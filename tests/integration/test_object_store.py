"""State on an object store: the whole flow runs with every table, landing file, report, model
artifact and serving snapshot on a real S3-compatible server (moto's, on loopback), and nothing on
the local disk but MLflow's database and the hosts' snapshot copies. A second host follows the
store's pointer; a damaged upload is refused and the snapshot served before stays."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import duckdb
import httpx
import pytest
from bench.servers import free_port, s3_server
from pyspark.sql import SparkSession
from upath import UPath

from prescore import storage
from prescore.config import ConfigError, Settings, UseCase, load_settings
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_flow
from prescore.platform import registry, tables
from prescore.serving import bi, snapshot, store
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from prescore.serving.reset import reset_usecase
from prescore.serving.store import SnapshotDownloadError
from prescore.stages import publish
from support import SNAPSHOT_RUN_DATE, publish_snapshot, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_DATE = date(2026, 11, 2)


def object_keys(settings: Settings) -> set[str]:
    """Every object under the settings' state prefix, as paths relative to it."""
    bucket, prefix = str(settings.state_dir).split("://", 1)[1].split("/", 1)
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return {
        item["Key"].removeprefix(prefix + "/")
        for page in pages
        for item in page.get("Contents", [])
    }


def mlflow_runs(settings: Settings) -> list[Any]:
    client = registry.client(settings)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs
    return list(runs)


def test_the_stages_keep_every_byte_of_state_on_the_store(
    spark: SparkSession, store_settings: Settings, churn: UseCase, tmp_path: Path
) -> None:
    write_landing(store_settings, churn, RUN_DATE, rows=400)
    environment = {
        **os.environ,  # the AWS variables the object_store fixture set
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(store_settings.state_dir),
        "MLFLOW_TRACKING_URI": store_settings.tracking_uri,
        "PRESCORE_SERVING_CACHE_DIR": str(store_settings.serving_cache_dir),
    }
    command = [str(Path(sys.executable).with_name("prescore")), "run", "--usecase", churn.name]
    run = subprocess.run(
        [*command, "--run-date", str(RUN_DATE)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    keys = object_keys(store_settings)
    landing = f"landing/{churn.source.path}/run_date={RUN_DATE}/"
    assert any(key.startswith(landing) and key.endswith(".parquet") for key in keys)
    for table in (churn.raw_table, churn.clean_table, churn.predictions_table):
        assert f"delta/{table}/_delta_log/00000000000000000000.json" in keys
        assert tables.exists(store_settings, table)
    assert f"reports/{churn.name}/data_{churn.name}_{RUN_DATE}.html" in keys
    assert any(key.startswith(f"reports/{churn.name}/monitoring_") for key in keys)
    assert any(key.startswith("mlflow/artifacts/") and key.endswith("MLmodel") for key in keys)
    # The scores are on the store and read back through it: one per clean customer.
    scores = tables.read_run(spark, store_settings, churn.predictions_table, RUN_DATE)
    clean = tables.read_run(spark, store_settings, churn.clean_table, RUN_DATE)
    assert 0 < scores.count() == clean.select(*churn.keys).distinct().count() <= 400
    # The champion's package loads from the store's artifacts.
    package = registry.load_package(registry.resolve_alias(store_settings, churn))
    assert package is not None
    # The snapshot, its checksums and the pointer are on the store.
    pointer = json.loads((store_settings.serving_dir / churn.name / "current.json").read_text())
    name = pointer["snapshot"]
    for file in (name, name.replace(".duckdb", ".keys.arrow"), f"{name}.sha256.json"):
        assert f"serving/{churn.name}/snapshots/{file}" in keys
    # Locally: MLflow's database and the publisher's copy of the snapshots, nothing else.
    assert {p.name for p in tmp_path.iterdir()} == {"mlflow.db", "serving-cache"}
    # BI reads the Delta tables on the store: a views file, queried with the session's secret.
    bi.build_bi_views(store_settings, churn, tmp_path / "bi" / "churn.duckdb")
    with duckdb.connect(str(tmp_path / "bi" / "churn.duckdb"), read_only=True) as con:
        con.execute(bi.load_statement(store_settings))
        con.execute(storage.duckdb_secret_sql())
        [(published,)] = con.execute("select count(*) from prediction_runs").fetchall()
    assert published == scores.count()
    (tmp_path / "bi" / "churn.duckdb").unlink()
    (tmp_path / "bi").rmdir()
    # The credentials and the endpoint reach none of the run's output.
    output = run.stdout + run.stderr
    assert "publish" in output
    endpoint = os.environ["AWS_ENDPOINT_URL"].split("://")[1]
    for secret in (os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"], endpoint):
        assert secret not in output
    # A reset reads the publish log through DuckDB's httpfs and leaves the landing files only.
    removed = reset_usecase(store_settings, churn, keep_raw=False, spark=lambda: spark)
    assert removed["publish_log_rows_deleted"] == 1
    left = {key.split("/", 1)[0] for key in object_keys(store_settings)}
    assert left == {
        "landing",
        "mlflow",
        "delta",
    }  # delta: the shared publish_log, now without churn
    assert not any(
        key.startswith(f"delta/{churn.raw_table}/") for key in object_keys(store_settings)
    )

    for run in mlflow_runs(store_settings):
        logged = json.dumps([run.data.params, run.data.tags])
        for secret in (
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ["AWS_ACCESS_KEY_ID"],
            endpoint,
        ):
            assert secret not in logged, run.info.run_id


def test_serving_hosts_follow_the_store_and_refuse_a_damaged_snapshot(
    spark: SparkSession, store_settings: Settings, churn: UseCase, tmp_path: Path
) -> None:
    write_landing(store_settings, churn, RUN_DATE, rows=200)
    ctx = RunContext(store_settings, churn, RUN_DATE, spark)
    first = run_flow(ctx, ("ingest", "validate", "clean", "train", "score", "publish"))
    first_name = Path(str(first["publish"]["snapshot"])).name
    reader = store_settings.model_copy(update={"serving_cache_dir": tmp_path / "reader"})

    assert snapshot.follow_store(reader, churn) == first_name
    assert snapshot.follow_store(reader, churn) is None  # already there
    scores = tables.read_run(spark, store_settings, churn.predictions_table, RUN_DATE)
    key, expected = scores.select(*churn.keys, "score").first()  # type: ignore[misc]
    assert Scores(churn, reader).get(key).score == pytest.approx(expected)

    # A host running `prescore serve`'s app. Its looks at the store are made here, one at a time
    # (app.state.store_follower), so a look never races the damage below; polling by itself is
    # test_prescore_serve_keeps_answering_while_the_store_is_down's.
    serve = store_settings.serve.model_copy(update={"store_poll_seconds": 3600})
    http_host = store_settings.model_copy(  # keeps one copy: the served one
        update={
            "serving_cache_dir": tmp_path / "http-host",
            "serve": serve,
            "serving_snapshots_kept": 1,
        }
    )
    app = create_app(http_host, [churn])
    follower = app.state.store_follower
    with running(app) as http:
        answer = http.get(f"/v1/{churn.name}/scores/{key}")
        assert answer.status_code == 200
        assert answer.json()["score"] == pytest.approx(expected)
        store_state = http.get("/readyz").json()["usecases"][churn.name]["store"]
        assert store_state["synced_seconds_ago"] is not None and "error" not in store_state

        second = run_flow(ctx, ("score", "publish"))  # a new predictions version, a new snapshot
        second_name = Path(str(second["publish"]["snapshot"])).name
        assert second_name != first_name
        damaged = f"{store_settings.state_dir}/serving/{churn.name}/snapshots/{second_name}"
        bucket, path = damaged.split("://", 1)[1].split("/", 1)
        boto3.client("s3").put_object(Bucket=bucket, Key=path, Body=b"not a DuckDB file")
        with pytest.raises(SnapshotDownloadError, match="SHA-256 does not match"):
            snapshot.follow_store(reader, churn)

        # The serving host refuses it too, says so, and keeps answering from the first.
        follower.sync_once()
        ready = http.get(f"/readyz/{churn.name}").json()
        assert ready["ready"] and ready["snapshot"] == first_name
        assert "SHA-256 does not match" in ready["store"]["error"]
        assert http.get(f"/v1/{churn.name}/scores/{key}").json()["score"] == pytest.approx(expected)
        metrics = http.get("/metrics").text
        assert f'prescore_store_sync_age_seconds{{usecase="{churn.name}"}}' in metrics
        assert os.readlink(snapshot.current_path(reader, churn)) == f"snapshots/{first_name}"
        leftovers = [p.name for p in snapshot.current_path(reader, churn).parent.rglob("*partial*")]
        assert leftovers == []

        # Once the upload is whole again, the host moves to it on its next look.
        built = snapshot.usecase_dir(store_settings, churn) / "snapshots" / second_name
        boto3.client("s3").put_object(Bucket=bucket, Key=path, Body=built.read_bytes())
        follower.sync_once()
        assert http.get(f"/readyz/{churn.name}").json()["snapshot"] == second_name
        assert "error" not in http.get(f"/readyz/{churn.name}").json()["store"]
        copies = snapshot.usecase_dir(http_host, churn) / "snapshots"
        assert sorted(p.name for p in copies.iterdir()) == [
            second_name,
            second_name.replace(".duckdb", ".keys.arrow"),
        ]

        # A rollback on a publisher with no copy fetches the older snapshot from the store
        # first; the serving host follows it back.
        publisher_elsewhere = store_settings.model_copy(
            update={"serving_cache_dir": tmp_path / "other-publisher"}
        )
        rolled = publish.rollback(spark, publisher_elsewhere, churn)
        assert Path(str(rolled["snapshot"])).name == first_name
        assert snapshot.pointer_target(store_settings, churn) == f"snapshots/{first_name}"
        follower.sync_once()
        assert http.get(f"/readyz/{churn.name}").json()["snapshot"] == first_name
        assert http.get(f"/v1/{churn.name}/scores/{key}").json()["score"] == pytest.approx(expected)
    assert snapshot.follow_store(reader, churn) is None  # the reader never left the first


def wait_until_served(
    http: httpx.Client, usecase: str, name: str, *, starting: subprocess.Popen[str] | None = None
) -> None:
    """Until the host serves snapshot `name`; `starting`: its process, still starting up."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"the serving host did not move to {name}"
        try:
            if http.get(f"/readyz/{usecase}").json().get("snapshot") == name:
                return
        except httpx.TransportError:
            assert starting is not None and starting.poll() is None, "prescore serve exited"
        time.sleep(0.2)


class ReaderLoop:
    """Threads that look up one key on each serving host, over and over, until stopped: every
    answer's score, and every failed read (an error status or a refused connection)."""

    def __init__(self, urls: list[str], path: str) -> None:
        self.scores: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, args=(url, path), daemon=True) for url in urls
        ]

    def __enter__(self) -> ReaderLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _read(self, url: str, path: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    answer = http.get(path)
                    if answer.status_code == 200:
                        self.scores.append(answer.json()["score"])
                    else:
                        self.failures.append(f"{url}: {answer.status_code} {answer.text}")
                except Exception as error:  # a refused connection, a body that is not JSON...
                    self.failures.append(f"{url}: {error!r}")


def test_two_prescore_serve_processes_follow_the_store_and_outlive_it(
    object_store: str, fresh_settings: Settings, churn: UseCase, tmp_path: Path
) -> None:
    """Two `prescore serve` processes, each with its own cache, follow a publish and a rollback
    under a reader loop with no failed read; then the test stops their S3 server under them and
    they keep answering (object_store: for the credentials it puts in the environment)."""
    servers = contextlib.ExitStack()
    endpoint = servers.enter_context(s3_server())
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="stopped")
        on_server = UPath("s3a://stopped/state", client_kwargs={"endpoint_url": endpoint})
        remote = fresh_settings.model_copy(update={"state_dir": on_server})

        def publish_to_store(rows: list[tuple[str, float]], version: int) -> str:
            """Build on a local state, upload, then move the pointer: publish's order."""
            built = publish_snapshot(fresh_settings, churn, rows, version=version)
            store.push_snapshot(remote, churn, built)
            store.write_pointer(remote, churn, built.name, run_date=str(SNAPSHOT_RUN_DATE))
            return built.name

        first = publish_to_store([("C1", 0.25), ("C2", 0.75)], version=1)
        hosts = [serve_process(endpoint, churn, tmp_path / f"host-{n}") for n in range(2)]
        clients = [httpx.Client(base_url=url, timeout=10) for url, _ in hosts]
        try:
            for http, (_, process) in zip(clients, hosts, strict=True):
                wait_until_served(http, churn.name, first, starting=process)

            with ReaderLoop([url for url, _ in hosts], f"/v1/{churn.name}/scores/C1") as readers:
                second = publish_to_store([("C1", 0.5), ("C2", 0.125)], version=2)
                for http in clients:
                    wait_until_served(http, churn.name, second)
                    assert http.get(f"/v1/{churn.name}/scores/C1").json()["score"] == 0.5
                # A rollback moves the pointer back to a snapshot the store still holds.
                store.write_pointer(remote, churn, first, run_date=str(SNAPSHOT_RUN_DATE))
                for http in clients:
                    wait_until_served(http, churn.name, first)
                    assert http.get(f"/v1/{churn.name}/scores/C1").json()["score"] == 0.25
            assert readers.failures == []
            assert set(readers.scores) == {0.25, 0.5} and len(readers.scores) > 100

            servers.close()  # the store goes away mid-poll
            for http in clients:
                deadline = time.monotonic() + 120
                while "error" not in (state := http.get(f"/readyz/{churn.name}").json())["store"]:
                    assert time.monotonic() < deadline, "a host never noticed the store was gone"
                    time.sleep(0.5)
                assert state["ready"] and state["snapshot"] == first
                assert endpoint.split("://")[1] not in state["store"]["error"]
                assert http.get(f"/v1/{churn.name}/scores/C2").json()["score"] == 0.75
                age = state["store"]["synced_seconds_ago"]
                time.sleep(1)
                later = http.get(f"/readyz/{churn.name}").json()["store"]["synced_seconds_ago"]
                assert later > age  # the staleness grows while the store is away
        finally:
            for http in clients:
                http.close()
            outputs = [stop(process) for _, process in hosts]
        for output in outputs:
            assert endpoint.split("://")[1] not in output
    finally:
        servers.close()


def serve_process(endpoint: str, churn: UseCase, home: Path) -> tuple[str, subprocess.Popen[str]]:
    """`prescore serve` following s3://stopped/state with its own cache and MLflow database,
    polling every 0.3 s; its URL and process."""
    port = free_port()
    environment = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": "s3://stopped/state",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PRESCORE_SERVING_CACHE_DIR": str(home / "cache"),
        "PRESCORE_STORE_POLL_SECONDS": "0.3",
        "AWS_ENDPOINT_URL": endpoint,
    }
    home.mkdir(parents=True)
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [prescore, "serve", "--port", str(port), "--usecase", churn.name]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return f"http://127.0.0.1:{port}", process


def stop(process: subprocess.Popen[str]) -> str:
    """Terminate a serving process; its output."""
    process.terminate()
    output, _ = process.communicate(timeout=30)
    return output


def test_a_rerun_of_the_date_on_the_store_replaces_its_rows(
    spark: SparkSession, store_settings: Settings, churn: UseCase
) -> None:
    write_landing(store_settings, churn, RUN_DATE, rows=50)
    ctx = RunContext(store_settings, churn, RUN_DATE, spark)
    run_flow(ctx, ("ingest",))
    first = tables.read_run(spark, store_settings, churn.raw_table, RUN_DATE).count()
    run_flow(ctx, ("ingest",))
    raw = tables.read_run(spark, store_settings, churn.raw_table, RUN_DATE)
    assert raw.count() == first >= 50  # the generator lands a few duplicates of its own
    assert tables.latest_version(store_settings, churn.raw_table) == 1
    assert tables.remove(store_settings, churn.raw_table)
    assert not tables.exists(store_settings, churn.raw_table)
    assert not any(
        key.startswith(f"delta/{churn.raw_table}/") for key in object_keys(store_settings)
    )


# One Spark driver writing to the store, its session from prescore's settings (so its jars and
# LogStore too). It says "ready" once up, then follows orders on stdin, one per line:
#   race <file>: create <file> through the session's LogStore as Delta creates a commit file
#                (never overwriting); prints "created" or "refused"
#   append <table> <writer> <n>: n appends of one row each to a Delta table, then "appended"
DRIVER = """
import os
import sys
from py4j.protocol import Py4JJavaError
from prescore.config import load_settings
from prescore.platform.spark import get_spark

spark = get_spark(load_settings())
jvm, hadoop = spark._jvm, spark._jsc.hadoopConfiguration()
name = spark.conf.get("spark.delta.logStore.s3a.impl")
loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
store_class = jvm.java.lang.Class.forName(name, True, loader)
arguments = spark.sparkContext._gateway.new_array(jvm.java.lang.Object, 1)
arguments[0] = hadoop
store = store_class.getConstructors()[0].newInstance(arguments)
print("ready", name, flush=True)
for order in sys.stdin:
    verb, *args = order.split()
    if verb == "race":
        lines = jvm.java.util.ArrayList()
        lines.add(f'{{"commitInfo": {{"driver": {os.getpid()}}}}}')  # each commit its own bytes
        try:
            store.write(jvm.org.apache.hadoop.fs.Path(args[0]), lines.iterator(), False, hadoop)
            print("created", flush=True)
        except Py4JJavaError as error:
            assert "FileAlreadyExistsException" in str(error.java_exception), error
            print("refused", flush=True)
    elif verb == "append":
        table, writer, commits = args[0], args[1], int(args[2])
        for commit in range(commits):
            row = spark.createDataFrame([(writer, commit)], "writer string, commit int")
            row.write.format("delta").mode("append").save(table)
        print("appended", flush=True)
"""


@pytest.mark.reliability
def test_two_drivers_committing_to_one_table_on_the_store_lose_nothing(
    spark: SparkSession, store_settings: Settings
) -> None:
    """Two Spark drivers (a backfill beside the schedule) write to one table at once.

    Delta commits version N by creating its commit file only if absent. Both drivers race to
    create the same files, released together: each file is created by exactly one, the other
    refused, because prescore's LogStore creates them with S3's conditional put
    (prescore.platform.logstore). Delta's own S3 LogStore checks, then writes: when both check
    before either writes, both "create" the file and one commit is lost. Then both append to one
    table at once: every append lands, the refused ones retried by Delta on the next version."""
    rounds, commits = 40, 6
    environment = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(store_settings.state_dir),
        "MLFLOW_TRACKING_URI": store_settings.tracking_uri,
    }
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        for _ in range(2)
    ]

    def order_both(order: str) -> list[str]:
        for driver in drivers:  # both released together
            send(driver, order)
        return [answer_line(driver) for driver in drivers]

    try:
        for driver in drivers:  # both sessions up before either writes
            assert answer_line(driver).split() == ["ready", "prescore.delta.ConditionalPutLogStore"]
        race = f"{store_settings.state_dir}/race/_delta_log"
        outcomes = [sorted(order_both(f"race {race}/{n:020d}.json")) for n in range(rounds)]
        assert outcomes == [["created", "refused"]] * rounds

        table = str(store_settings.state_dir / "delta" / "two_drivers")
        spark.createDataFrame([], "writer string, commit int").write.format("delta").save(table)
        for driver, name in zip(drivers, ("schedule", "backfill"), strict=True):
            send(driver, f"append {table} {name} {commits}")
        assert [answer_line(driver) for driver in drivers] == ["appended", "appended"]
    finally:
        for driver in drivers:
            driver.kill()
            driver.wait()
    written = {tuple(row) for row in spark.read.format("delta").load(table).collect()}
    assert written == {(name, n) for name in ("schedule", "backfill") for n in range(commits)}
    history = spark.sql(f"describe history delta.`{table}`").collect()
    assert len(history) == 2 * commits + 1  # the create, then one version per append


def send(process: subprocess.Popen[str], order: str) -> None:
    """Write one order line to the process."""
    assert process.stdin is not None
    process.stdin.write(f"{order}\n")
    process.stdin.flush()


def answer_line(process: subprocess.Popen[str]) -> str:
    """The process's next line on stdout; fails if it ended instead."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        pytest.fail(f"the driver ended (exit {process.wait()}) instead of answering")
    return line.strip()


def test_state_on_the_store_needs_a_tracking_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESCORE_STATE_DIR", "s3://lake/prescore/")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="state_dir s3a://lake/prescore is on an object store"):
        load_settings()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db/mlflow")
    settings = load_settings()
    assert str(settings.state_dir) == "s3a://lake/prescore"  # s3:// is the same place
    assert str(settings.table_path("raw")) == "s3a://lake/prescore/delta/raw"
    assert (
        storage.artifact_uri(settings.mlflow_artifacts_dir) == "s3://lake/prescore/mlflow/artifacts"
    )


@pytest.mark.parametrize("value", ["gs://bucket/state", "s3a://", "ftp://host/state"])
def test_a_state_folder_on_another_scheme_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESCORE_STATE_DIR", value)
    with pytest.raises(ConfigError, match="a state folder is a local path or s3a://<bucket>"):
        load_settings()
