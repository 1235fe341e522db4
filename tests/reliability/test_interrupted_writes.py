"""Reliability of the Delta writes every stage makes (`tables.replace_run`): a writer killed between
its data files and its commit (case 1), and the same run_date written twice at once (case 2).

The writers are real processes with their own Spark session (delta_writer.py), killed or raced
for real; the checks read the table back with Spark and with DuckDB's delta extension.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import Settings
from prescore.platform import tables

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
WRITER = Path(__file__).with_name("delta_writer.py")
TABLE = "raw_events"
RUN_DATE = date(2026, 11, 5)
ROWS = 400  # delta_writer.ROWS


class Writer:
    """delta_writer.py in its own process group (its JVM dies with it)."""

    def __init__(self, settings: Settings, marker: str, hold: float, go: Path) -> None:
        env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(settings.state_dir)}
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), TABLE, RUN_DATE.isoformat(), marker, str(hold), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def wait_for(self, line: str, timeout: float = 300) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.process.stdout.readline()
            if got.strip() == line:
                return
            if not got and self.process.poll() is not None:
                break
        self.kill()
        raise AssertionError(f"writer never printed {line!r}: {self.stderr()[-2000:]}")

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stderr(self) -> str:
        self.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()


@contextmanager
def writers(*running: Writer) -> Iterator[None]:
    try:
        yield
    finally:
        for writer in running:
            writer.kill()


def data_files(settings: Settings) -> set[Path]:
    return set((settings.table_path(TABLE) / f"run_date={RUN_DATE}").glob("*.parquet"))


def markers(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """Rows per marker in the run_date, as Spark reads the table."""
    rows = tables.read_run(spark, settings, TABLE, RUN_DATE).groupBy("marker").count().collect()
    return {r.marker: r["count"] for r in rows}


def duckdb_markers(settings: Settings) -> dict[str, int]:
    """The same, as DuckDB's delta extension reads it (another reader of the same log)."""
    found = tables.read_with_duckdb(
        settings, TABLE, ["marker"], where="run_date = ?", params=[RUN_DATE]
    )
    counts: dict[str, int] = {}
    for (marker,) in found:
        counts[marker] = counts.get(marker, 0) + 1
    return counts


def write(spark: SparkSession, settings: Settings, marker: str) -> None:
    frame = spark.range(ROWS).select(
        "id", F.lit(marker).alias("marker"), F.lit(RUN_DATE).alias("run_date")
    )
    tables.replace_run(frame, settings, TABLE, RUN_DATE)


def test_writer_killed_before_its_commit_leaves_the_previous_version_and_a_clean_rerun(
    spark: SparkSession, fresh_settings: Settings
) -> None:
    """Case 1: a writer SIGKILLed after writing data files, before committing: Spark and DuckDB
    still read the previous version; its orphan files are on disk but in no result; the rerun
    replaces the run_date exactly once."""
    write(spark, fresh_settings, "before")
    committed = data_files(fresh_settings)
    go = fresh_settings.state_dir / "go"
    go.touch()
    killed = Writer(fresh_settings, "killed", hold=600, go=go)
    with writers(killed):
        killed.wait_for("ready")
        deadline = time.monotonic() + 300
        while not data_files(fresh_settings) - committed:
            assert killed.process.poll() is None, killed.stderr()[-2000:]
            assert time.monotonic() < deadline, "the writer wrote no data file"
            time.sleep(0.05)
        killed.kill()

    orphans = data_files(fresh_settings) - committed
    assert orphans  # the kill came between the data files and the commit
    assert markers(spark, fresh_settings) == {"before": ROWS}
    assert duckdb_markers(fresh_settings) == {"before": ROWS}

    write(spark, fresh_settings, "rerun")
    assert markers(spark, fresh_settings) == {"rerun": ROWS}
    assert duckdb_markers(fresh_settings) == {"rerun": ROWS}
    assert orphans <= data_files(fresh_settings)  # still on disk (VACUUM's job), never read


def test_two_writers_of_one_run_date_at_once_never_duplicate(
    spark: SparkSession, fresh_settings: Settings
) -> None:
    """Case 2: two processes replace the same run_date at the same time: the table holds exactly
    one writer's rows; the loser fails loudly, naming the concurrent commit."""
    write(spark, fresh_settings, "before")
    go = fresh_settings.state_dir / "go"
    first = Writer(fresh_settings, "first", hold=8, go=go)
    second = Writer(fresh_settings, "second", hold=8, go=go)
    with writers(first, second):
        first.wait_for("ready")
        second.wait_for("ready")
        go.touch()  # both start writing now; each holds its last task 8 s, so they overlap
        outcomes = {"first": first.finish(), "second": second.finish()}

    winners = [m for m, (code, _) in outcomes.items() if code == 0]
    losers = {m: err for m, (code, err) in outcomes.items() if code != 0}
    assert len(winners) == 1, {m: (code, err[-1500:]) for m, (code, err) in outcomes.items()}
    assert "Concurrent" in next(iter(losers.values()))  # Delta's ConcurrentXxxException
    assert markers(spark, fresh_settings) == {winners[0]: ROWS}
    assert duckdb_markers(fresh_settings) == {winners[0]: ROWS}
