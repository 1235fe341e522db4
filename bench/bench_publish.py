"""Publish throughput: prescore's serving snapshot build against a plain DuckDB `create table as`.

Same Parquet files, same machine, same run. Predictions for every key (small: 1M, full: 10M),
with the columns the score stage writes, are generated with numpy into a few Parquet files (as
Delta writes a partition), then, round after round:

- baseline: DuckDB `create table predictions as select * from read_parquet(files)` into a new
  file, checkpointed: the least any DuckDB-served table costs to make;
- prescore: `serving.build_snapshot`, what the publish stage runs after its checks: the table in
  key order plus run_date (the run's constant stamps as virtual columns, as for any scoring run),
  the sql/ views, the key file for lookups, renamed into place.

Target (P3): the snapshot build takes at most 2x the plain copy (ratio >= 0.5). The Spark checks
before it (one aggregate pass over the candidate) and the publish_log append are not included:
they do not depend on the serving format.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from bench import DATA_DIR, Measurement, best_times
from bench.bench_lookup import write_predictions
from prescore.config import load_settings, load_usecase
from prescore.serving import keyindex, snapshot

BENCHMARK = "publish"
KEYS = {"small": 1_000_000, "full": 10_000_000}
FILES = 4  # a Delta partition written by a few Spark tasks
RUN_DATE = date(2026, 11, 1)
CTAS = "duckdb create table as select"
PRESCORE = "prescore build_snapshot"


def prediction_files(size: str) -> list[str]:
    """The generated predictions of a size, split into FILES Parquet files; written once."""
    folder = DATA_DIR / f"publish-{size}"
    files = [folder / f"part-{i}.parquet" for i in range(FILES)]
    if not all(f.exists() for f in files):
        whole = folder / "whole.parquet"
        write_predictions(whole, KEYS[size])
        table = pq.read_table(whole)
        step = -(-table.num_rows // FILES)
        for i, path in enumerate(files):
            pq.write_table(table.slice(i * step, step), path, row_group_size=1_000_000)
        whole.unlink()
    return [str(f) for f in files]


def plain_copy(target: Path, files: list[str]) -> int:
    target.unlink(missing_ok=True)
    with duckdb.connect(str(target)) as con:
        con.execute("create table predictions as select * from read_parquet(?)", [files])
        con.execute("checkpoint")
        return int(con.execute("select count(*) from predictions").fetchone()[0])  # type: ignore[index]


def run(size: str) -> list[Measurement]:
    settings = load_settings(env="test")
    settings = settings.model_copy(update={"state_dir": DATA_DIR / f"publish-{size}" / "state"})
    usecase = load_usecase("churn", settings)
    files = prediction_files(size)
    views = snapshot.load_views(settings.sql_dir)
    out = DATA_DIR / f"publish-{size}" / "out"
    out.mkdir(parents=True, exist_ok=True)
    built = out / "snapshot.duckdb"

    def build() -> int:
        built.unlink(missing_ok=True)
        keyindex.key_file(built).unlink(missing_ok=True)
        return snapshot.build_snapshot(
            built, parquet_files=files, run_date=RUN_DATE, keys=usecase.keys, views=views
        )

    rows = {"copy": plain_copy(out / "plain.duckdb", files), "build": build()}
    assert rows["copy"] == rows["build"] == KEYS[size], rows
    began = time.perf_counter()
    seconds = best_times(
        {CTAS: lambda: plain_copy(out / "plain.duckdb", files), PRESCORE: build},
        repeats=3,
        warmups=0,
    )
    elapsed = time.perf_counter() - began
    notes = {
        CTAS: "read_parquet -> table, checkpoint; no order, no views, no key file",
        PRESCORE: "key order, constants virtual, + run_date, sql/ views, key file; target <= 2x",
    }
    return [
        Measurement(
            benchmark=BENCHMARK,
            subject=subject,
            metric="build",
            value=value,
            unit="s",
            higher_is_better=False,
            baseline=None if subject == CTAS else CTAS,
            note=f"{notes[subject]}; {KEYS[size]:,} rows in {FILES} files; best of 3 ({elapsed:.0f} s all)",
        )
        for subject, value in seconds.items()
    ]
