"""Shared fixtures: one local[2] SparkSession with Delta, and Settings on a temporary state folder."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.servers import s3_server
from filelock import FileLock
from pyspark.sql import SparkSession

from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_flow
from prescore.platform.spark import get_spark
from support import FLOW_LOG, FLOW_RUN_DATE, logged_to, settings_on_store

STORE_BUCKET = "prescore-test"

# py4j logs at INFO while the interpreter shuts down, after pytest closed the captured streams.
logging.getLogger("py4j").setLevel(logging.WARNING)

# Tests hash PII with a throwaway key; production reads it from the environment only.
os.environ.setdefault("PRESCORE_HMAC_KEY", "test-only-hmac-key")

# Each JVM a test starts for one command (a CLI, an Airflow task, a cluster job) runs seconds on
# tiny data: with the JIT's first tier alone it spends less CPU compiling on the two shared cores.
# Tests only: a user's JVM keeps the full JIT (bench/README.md, startup).
FIRST_TIER_ONLY = "-XX:TieredStopAtLevel=1"
os.environ.setdefault("SPARK_SUBMIT_OPTS", FIRST_TIER_ONLY)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """conf/base.yaml + conf/env/test.yaml, with every table and file under a fresh tmp folder."""
    state_dir: Path = tmp_path_factory.mktemp("state")
    return load_settings(env="test").model_copy(update={"state_dir": state_dir})


@pytest.fixture(scope="session")
def object_store() -> Iterator[str]:
    """A real S3-compatible server on loopback for the session, named in the AWS variables every
    store client reads (Spark's s3a, s3fs, boto3 for MLflow), with one bucket: its s3a:// URI.
    The variables are set before the one SparkSession starts, which takes its endpoint then."""
    import boto3

    with s3_server() as endpoint, pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "test-key-id")
        env.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-access-key")
        env.setenv("AWS_REGION", "us-east-1")
        boto3.client("s3").create_bucket(Bucket=STORE_BUCKET)
        yield f"s3a://{STORE_BUCKET}"


@pytest.fixture
def store_settings(settings: Settings, object_store: str, tmp_path: Path) -> Settings:
    """Settings whose state is an empty prefix on the object store (support.settings_on_store)."""
    return settings_on_store(settings, object_store, tmp_path)


@pytest.fixture(scope="session")
def spark(settings: Settings, object_store: str) -> Iterator[SparkSession]:
    with pytest.MonkeyPatch.context() as env:
        # The session lives the whole run: the full JIT pays back (bench/README.md, make test).
        if os.environ.get("SPARK_SUBMIT_OPTS") == FIRST_TIER_ONLY:
            env.delenv("SPARK_SUBMIT_OPTS")
        session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def churn(settings: Settings) -> UseCase:
    return load_usecase("churn", settings)


@pytest.fixture
def fresh_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose state folder is empty, for tests that must not see other tests' tables."""
    return settings.model_copy(update={"state_dir": tmp_path / "state"})


@pytest.fixture(scope="session")
def flow(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RunContext, dict[str, dict[str, object]]]:
    """The whole flow on 1000 generated customers, in its own state folder, with every log record
    also in <state>/flow.log: (context, each stage's summary as the CLI prints it).

    Run once per `make test`: the first worker to ask runs it while the others wait on a lock, then
    each reads it with its own SparkSession. Tests never change its tables: those that write work
    on a copy of its folder (support.copy_of_flow)."""
    # Under xdist every worker's base temp folder sits in the run's own folder: theirs to share.
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    state = settings.model_copy(update={"state_dir": shared / "flow"})
    ctx = RunContext(state, churn, FLOW_RUN_DATE, spark)
    summaries = shared / "flow-summaries.json"
    with FileLock(shared / "flow.lock"):
        if not summaries.exists():
            if state.state_dir.exists():  # a worker began it and failed: its error says why
                pytest.fail(f"the session's flow failed on another worker: {state.state_dir}")
            write_landing(state, churn, FLOW_RUN_DATE, rows=1000)
            with logged_to(state.state_dir / FLOW_LOG):
                summary = run_flow(ctx)
            summaries.write_text(json.dumps(summary, default=str), encoding="utf-8")
    return ctx, json.loads(summaries.read_text(encoding="utf-8"))


def _file_rank(items: list[pytest.Item]) -> dict[Path, int]:
    """Per test file: 0 if it is end to end, 1 if it has slow tests, else 2."""
    rank: dict[Path, int] = {}
    for item in items:
        mine = 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2
        rank[item.path] = min(rank.get(item.path, mine), mine)
    return rank


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end files first, then files with slow tests, then the rest; otherwise in collection
    order (the sort is stable and ranks whole files, so a file's tests stay together).

    `make test` hands whole files to its two workers in this order (--dist loadfile
    --no-loadscope-reorder): the Airflow runs, chains of spark-submits 10-15 minutes long on a busy
    machine, start at once and the quick files fill in around them. xdist's own order (most tests
    first) started them last, and the run waited for them at the end."""
    rank = _file_rank(items)
    items.sort(key=lambda item: rank[item.path])
