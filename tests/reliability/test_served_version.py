"""Readers get the newest good publish, whatever an operator does by routine: a backfill of an older
run date, rollbacks one after another, two publishes at once, a publish killed half way, a damaged
kept snapshot, a state folder copied elsewhere. Through the real publish stage on real Delta
tables, the real client, HTTP app and DuckDB."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from readers import KEYS, Readers, client_reader, http_reader, sql_reader, whole_version

from prescore.cli import main
from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import tables
from prescore.serving import keyindex, publish_log, snapshot
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from prescore.stages import publish
from support import running

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, "
    "model_run_id string, features_version bigint, scored_at timestamp, valid_until timestamp, "
    "run_date date"
)


def day(n: int) -> date:
    return date(2026, 11, n)


def land_predictions(
    spark: SparkSession, settings: Settings, churn: UseCase, version: int, run_date: date
) -> None:
    """What clean and score leave for publish: the population of `run_date` and predictions of
    model version `version` for it. The scores tell the version (test_publish_faults.score_of)."""
    population = spark.createDataFrame([(k,) for k in KEYS], "customer_id string")
    population = population.withColumn("run_date", F.lit(run_date))
    clean_version = tables.replace_run(population, settings, churn.clean_table, run_date)
    stamp, until = datetime.now().replace(microsecond=0), datetime(2099, 1, 1)
    rows = [
        (
            k,
            i / 1000 + (version - 1) * 0.0005,
            "prescore-churn",
            str(version),
            "run",
            clean_version,
            stamp,
            until,
            run_date,
        )
        for i, k in enumerate(KEYS)
    ]
    predictions = spark.createDataFrame(rows, PRED_SCHEMA)
    tables.replace_run(predictions, settings, churn.predictions_table, run_date)


def publish_version(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    version: int,
    run_date: date | None = None,
    **options: bool,
) -> dict[str, object]:
    """Publish model version `version`, for run date 2026-11-<version> unless told."""
    run_date = run_date or day(version)
    land_predictions(spark, settings, churn, version, run_date)
    return publish.run(RunContext(settings, churn, run_date, spark), **options)


def served(settings: Settings, churn: UseCase) -> str:
    """The one model version every key is answered with now (client and SQL agree)."""
    client = Scores(churn, settings)
    try:
        version = whole_version(
            [(str(s.model_version), s.key[0], s.score) for s in client.get_many(KEYS)]
        )
    finally:
        client.close()
    with duckdb.connect(str(snapshot.current_path(settings, churn)), read_only=True) as con:
        assert con.execute("select distinct model_version from scores").fetchall() == [(version,)]
    return version


def actions(spark: SparkSession, settings: Settings, churn: UseCase) -> list[tuple[str, str]]:
    return [(e.action, e.model_version or "") for e in publish_log.read(spark, settings, churn)]


def cli(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`prescore <args>` on this state folder, through the CLI's own parsing and dispatch, in
    this process (a second JVM per call would double the test's time): (exit code, stderr)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PRESCORE_ENV", "test")
        env.setenv("PRESCORE_STATE_DIR", str(settings.state_dir))
        capsys.readouterr()
        code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def state(fresh_settings: Settings) -> Settings:
    """An empty state folder keeping four snapshots, so three rollbacks from v4 reach v1."""
    return fresh_settings.model_copy(update={"serving_snapshots_kept": 4})


def hold_lock(settings: Settings, churn: UseCase) -> subprocess.Popen[str]:
    """Another process holding the use case's publish lock (as a long publish would) until killed."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from prescore.serving import snapshot
        from prescore.config import load_settings, load_usecase
        settings = load_settings(env="test").model_copy(update={{"state_dir": Path({str(settings.state_dir)!r})}})
        with snapshot.publish_lock(settings, load_usecase({churn.name!r}, settings), "publish of a test"):
            print("held", flush=True)
            time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def lock_holder(state: Settings, churn: UseCase) -> Iterator[subprocess.Popen[str]]:
    holder = hold_lock(state, churn)
    yield holder
    holder.kill()
    holder.wait()


# ---------------------------------------------------------------- serving moves forward only


def test_an_older_run_date_is_a_backfill_not_served_unless_asked(
    spark: SparkSession, state: Settings, churn: UseCase, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_version(spark, state, churn, 2)
    summary = publish_version(spark, state, churn, 1)

    assert summary["served"] is False
    assert "older than the served 2026-11-02" in str(summary["not_served_because"])
    assert served(state, churn) == "2"
    assert actions(spark, state, churn) == [("publish", "2"), ("backfill", "1")]
    assert Scores(churn, state).get(KEYS[0], as_of=datetime.now()).model_version == "2"
    backfill = snapshot.usecase_dir(state, churn) / str(summary["snapshot"])
    for path in (backfill, keyindex.key_file(backfill)):  # published files are read-only
        assert path.exists() and path.stat().st_mode & 0o222 == 0, path

    code, err = cli(
        state, capsys, "publish", "--usecase", "churn", "--run-date", "2026-11-01", "--serve-older"
    )
    assert code == 0, err[-2000:]
    assert served(state, churn) == "1"
    assert actions(spark, state, churn)[-1] == ("publish", "1")


# ---------------------------------------------------------------- one publish at a time


def test_a_second_publish_fails_naming_the_holder_and_changes_nothing(
    spark: SparkSession, state: Settings, churn: UseCase, lock_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(snapshot.PublishLockedError, match=rf"pid {lock_holder.pid} on "):
        publish_version(spark, state, churn, 1)
    with pytest.raises(snapshot.PublishLockedError, match="another publish or rollback"):
        publish.rollback(spark, state, churn)
    assert not snapshot.current_path(state, churn).exists()
    assert publish_log.read(spark, state, churn) == []

    lock_holder.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock behind
    lock_holder.wait()
    publish_version(spark, state, churn, 1)
    assert served(state, churn) == "1"


def test_a_publish_killed_between_log_and_pointer_is_never_trusted(
    spark: SparkSession, state: Settings, churn: UseCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_version(spark, state, churn, 1)

    def killed(staged: Path) -> None:
        raise SystemExit("killed before the pointer moved")

    with monkeypatch.context() as patch:
        patch.setattr(snapshot, "move_pointer", killed)
        with pytest.raises(SystemExit):
            publish_version(spark, state, churn, 2)
    assert [a for a in actions(spark, state, churn)] == [("publish", "1"), ("publish", "2")]

    # Readers do not trust the logged row the pointer never followed ...
    assert served(state, churn) == "1"
    assert Scores(churn, state).get(KEYS[0], as_of=datetime.now()).model_version == "1"
    with pytest.raises(LookupError, match="no earlier served snapshot"):
        publish.rollback(spark, state, churn)
    # ... and the next publish deletes it: a rollback from v3 goes to v1, never to v2.
    assert actions(spark, state, churn) == [("publish", "1")]
    publish_version(spark, state, churn, 3)
    publish.rollback(spark, state, churn)
    assert served(state, churn) == "1"


# ---------------------------------------------------------------- the state folder moves whole


def test_a_copied_state_folder_serves_looks_up_as_of_and_rolls_back(
    spark: SparkSession, state: Settings, churn: UseCase, tmp_path: Path
) -> None:
    publish_version(spark, state, churn, 1)
    between = datetime.now()
    publish_version(spark, state, churn, 2)
    copy = tmp_path / "copied-state"
    shutil.copytree(state.state_dir, copy, symlinks=True)
    moved_away = state.state_dir.rename(tmp_path / "original-gone")  # nothing may read it now
    copied = state.model_copy(update={"state_dir": copy})
    try:
        client = Scores(churn, copied)
        assert client.get(KEYS[1]).model_version == "2"
        assert client.get(KEYS[1], as_of=between).model_version == "1"
        assert client.snapshot.is_relative_to(copy)
        publish.rollback(spark, copied, churn)
        assert served(copied, churn) == "1"
        client.close()
    finally:
        moved_away.rename(state.state_dir)


# ---------------------------------------------------------------- all of it under readers


def damage(snapshot: Path) -> None:
    """A careless copy: truncate the snapshot's files in place (root ignores their 0444)."""
    for path in (snapshot, keyindex.key_file(snapshot)):
        with open(path, "r+b") as file:
            file.truncate(path.stat().st_size // 3)


def test_readers_never_fail_or_see_a_wrong_version_through_routine_operations(
    spark: SparkSession, state: Settings, churn: UseCase, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client, the HTTP app and SQL on current.duckdb loop while v1..v4 are published, an
    older run date is backfilled (v9), a second publish is refused by the lock, the backfill's
    files are damaged and a rollback to it refused, and three rollbacks walk back v3, v2, v1 (the
    last through `prescore rollback`; a fourth has nowhere to go): not one read fails, and none
    answers a version that was not being served."""
    publish_version(spark, state, churn, 1)
    client = Scores(churn, state)
    readers = Readers()
    walked = []
    with running(create_app(state, [churn])) as http:
        readers.add("client", client_reader(client))
        readers.add("http", http_reader(http))
        readers.add("sql", sql_reader(snapshot.current_path(state, churn)))
        with readers.looping():
            for version in (2, 3, 4):
                publish_version(spark, state, churn, version)
            backfill = publish_version(spark, state, churn, 9, run_date=date(2026, 10, 31))
            assert backfill["served"] is False
            holder = hold_lock(state, churn)
            try:
                with pytest.raises(snapshot.PublishLockedError):
                    publish_version(spark, state, churn, 5)
            finally:
                holder.kill()
                holder.wait()
            damage(snapshot.usecase_dir(state, churn) / str(backfill["snapshot"]))
            with pytest.raises(LookupError, match="cannot be served"):
                publish.rollback(spark, state, churn, to=date(2026, 10, 31))
            for _ in range(2):
                publish.rollback(spark, state, churn)
                walked.append(served(state, churn))
            code, err = cli(state, capsys, "rollback", "--usecase", "churn")
            assert code == 0, err[-2000:]
            walked.append(served(state, churn))
            code, err = cli(state, capsys, "rollback", "--usecase", "churn")
            assert code == 1
            assert "no earlier served snapshot to roll back to" in err
            time.sleep(0.3)
    client.close()
    wrong = {name: seen - {"1", "2", "3", "4"} for name, seen in readers.seen.items()}
    print(
        f"\nreaders: reads {dict(readers.reads)}, versions seen {readers.seen}, "
        f"failures {len(readers.failures)}"
    )
    assert readers.failures == []
    assert all(not w for w in wrong.values()), wrong
    assert all(readers.reads[name] for name in readers.seen), readers.reads
    assert walked == ["3", "2", "1"]
    assert [a for a, _ in actions(spark, state, churn)] == (
        ["publish"] * 4 + ["backfill"] + ["rollback"] * 3
    )
