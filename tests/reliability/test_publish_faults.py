"""Reliability of publish and rollback, through the real stage: readers never see an error or a mix
(case 3), and a full disk or a folder without write rights fails clearly with the previous
version still served (case 12)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from readers import KEYS, Readers, client_reader, http_reader, score_of, sql_reader

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import tables
from prescore.serving import publish_log, snapshot
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from prescore.stages import publish
from support import running

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
RUN_DATE = date(2026, 11, 5)
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, "
    "model_run_id string, features_version bigint, scored_at timestamp, valid_until timestamp, "
    "run_date date"
)


def score_predictions(spark: SparkSession, ctx: RunContext, version: int) -> None:
    """What the score stage leaves behind for publish: predictions of model version `version` for
    every key of the clean run_date."""
    stamp, until = datetime.now().replace(microsecond=0), datetime(2099, 1, 1)
    rows = [
        (k, score_of(version, i), "prescore-churn", str(version), "run", 0, stamp, until, RUN_DATE)
        for i, k in enumerate(KEYS)
    ]
    df = spark.createDataFrame(rows, PRED_SCHEMA)
    tables.replace_run(df, ctx.settings, ctx.usecase.predictions_table, RUN_DATE)


@pytest.fixture
def ctx(spark: SparkSession, fresh_settings: Settings, churn: UseCase) -> RunContext:
    """A use case with v1 published from real Delta tables."""
    population = spark.createDataFrame([(k,) for k in KEYS], "customer_id string").withColumn(
        "run_date", F.lit(RUN_DATE)
    )
    tables.replace_run(population, fresh_settings, churn.clean_table, RUN_DATE)
    context = RunContext(fresh_settings, churn, RUN_DATE, spark)
    score_predictions(spark, context, 1)
    publish.run(context)
    return context


def served_version(ctx: RunContext) -> str:
    """The model version every key is served with now, checked through the client and SQL."""
    client = Scores(ctx.usecase, ctx.settings)
    try:
        versions = {s.model_version for s in client.get_many(KEYS)}
    finally:
        client.close()
    with duckdb.connect(
        str(snapshot.current_path(ctx.settings, ctx.usecase)), read_only=True
    ) as con:
        rows = con.execute("select distinct model_version from scores").fetchall()
    assert len(versions) == 1 and {r[0] for r in rows} == versions
    return versions.pop()


def published_versions(spark: SparkSession, ctx: RunContext) -> list[str]:
    log = tables.read(spark, ctx.settings, publish_log.PUBLISH_LOG).orderBy("published_at")
    return [r.model_version for r in log.collect()]


# ---------------------------------------------------------------- case 3: readers during swaps


def test_readers_see_one_whole_version_through_publish_and_rollback(
    spark: SparkSession, ctx: RunContext
) -> None:
    """Case 3: the client, the HTTP service and SQL on current.duckdb loop while the real publish
    stage publishes v2 and rollback goes back to v1: every answer is wholly v1 or wholly v2, and
    not one is an error."""
    client = Scores(ctx.usecase, ctx.settings)
    readers = Readers()
    with running(create_app(ctx.settings, [ctx.usecase])) as http:
        readers.add("client", client_reader(client))
        readers.add("http", http_reader(http))
        readers.add("sql", sql_reader(snapshot.current_path(ctx.settings, ctx.usecase)))
        with readers.looping():
            time.sleep(0.5)
            score_predictions(spark, ctx, 2)
            publish.run(ctx)
            time.sleep(0.5)
            publish.rollback(spark, ctx.settings, ctx.usecase)
            time.sleep(0.5)
    client.close()
    assert readers.failures == []
    assert all(seen == {"1", "2"} for seen in readers.seen.values()), readers.seen
    assert served_version(ctx) == "1"


# ---------------------------------------------------------------- case 12: disk full, no rights


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (needs root: mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Write a file taking all of `folder`'s filesystem but `leave` bytes."""
    stats = os.statvfs(folder)
    filler = folder / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """No one may create a file in `folder`: chmod for a user, the immutable flag for root
    (root ignores permission bits)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root ignores permissions and chattr is not installed")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def leftovers(folder: Path) -> list[str]:
    """Files a failed publish could leave: partial snapshots and key files, staged links."""
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name or p.name[0] == ".")


def test_disk_full_during_publish_fails_clearly_and_keeps_the_previous_version(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    """Case 12a: the serving folder fills up while publish writes v2: the error names the snapshot
    and the cause, nothing is logged or left half-written, v1 is still served; once space is
    freed, the same publish succeeds."""
    with small_disk(fresh_settings.serving_dir, "8m") as disk:
        population = spark.createDataFrame([(k,) for k in KEYS], "customer_id string")
        population = population.withColumn("run_date", F.lit(RUN_DATE))
        tables.replace_run(population, fresh_settings, churn.clean_table, RUN_DATE)
        ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
        score_predictions(spark, ctx, 1)
        publish.run(ctx)
        snapshots = snapshot.usecase_dir(fresh_settings, churn) / "snapshots"
        filler = fill(disk, leave=16 * 1024)
        score_predictions(spark, ctx, 2)

        with pytest.raises(snapshot.SnapshotWriteError, match=r"No space left on device") as err:
            publish.run(ctx)

        assert str(snapshots) in str(err.value)
        assert served_version(ctx) == "1"
        assert published_versions(spark, ctx) == ["1"]
        assert leftovers(snapshots) == []
        filler.unlink()
        publish.run(ctx)
        assert served_version(ctx) == "2"


@pytest.mark.parametrize("folder", ["snapshots", "pointer"])
def test_no_write_rights_during_publish_fails_clearly_and_keeps_the_previous_version(
    spark: SparkSession, ctx: RunContext, folder: str
) -> None:
    """Case 12b: the snapshot folder, or the folder of the current.duckdb link, refuses writes
    while publish runs: a clear error naming the path, nothing logged, v1 still served."""
    score_predictions(spark, ctx, 2)
    home = snapshot.usecase_dir(ctx.settings, ctx.usecase)
    target = home / "snapshots" if folder == "snapshots" else home
    with unwritable(target), pytest.raises(snapshot.SnapshotWriteError) as err:
        publish.run(ctx)
    assert str(home) in str(err.value)
    assert re.search(r"Permission denied|Operation not permitted", str(err.value))
    assert served_version(ctx) == "1"
    assert published_versions(spark, ctx) == ["1"]
    assert leftovers(home / "snapshots") == [] and leftovers(home) == []
