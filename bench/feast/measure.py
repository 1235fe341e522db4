"""Feast baseline for the lookup benchmark: materialize a scores Parquet into SQLite, then time lookups.

Runs in its own virtual environment (bench/.venv-feast, made by bench/feast/setup.sh), because
Feast's pins clash with prescore's:

    bench/.venv-feast/bin/python bench/feast/measure.py --scores scores.parquet --out feast.json

Input: one row per customer_id, with columns customer_id (string), score (float64) and
scored_at (timestamp, UTC). Output: one JSON object with the Feast version, the rows
materialized, the seconds `materialize` took, and the latency of `get_online_features` for one
key and for batches of keys (p50/p99 in ms). Every returned score is checked against the Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

# Older Feast releases post usage telemetry unless told not to; the benchmark uses no network.
os.environ["FEAST_USAGE"] = "False"

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast.types import Float64

# Sorted as first-party only because this folder is named feast; it is the installed package.
import feast
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType

PROJECT = "prescore_bench"
VIEW = "customer_scores"
FEATURE = f"{VIEW}:score"
ABSENT_SHARE = 0.1  # share of looked-up keys that are not in the store
ABSENT_SUFFIX = "#absent"  # appended to a real key to make a key that is surely not stored

FEATURE_STORE_YAML = """\
project: {project}
registry: {repo}/registry.db
provider: local
online_store:
  type: sqlite
  path: {repo}/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, required=True, help="Parquet of scores")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--single", type=int, default=20_000, help="single-key lookups timed")
    parser.add_argument("--batches", type=int, default=200, help="batch lookups timed")
    parser.add_argument("--batch-size", type=int, default=1000, help="keys per batch lookup")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def apply_repo(repo: Path, scores: Path) -> FeatureStore:
    """A Feast repo in `repo` with one entity and one feature view over `scores`, applied."""
    yaml = FEATURE_STORE_YAML.format(project=PROJECT, repo=repo.as_posix())
    (repo / "feature_store.yaml").write_text(yaml)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    source = FileSource(path=str(scores.resolve()), timestamp_field="scored_at")
    view = FeatureView(
        name=VIEW,
        entities=[customer],
        schema=[Field(name="score", dtype=Float64)],
        source=source,
        ttl=timedelta(0),  # 0: rows never expire, like a precomputed score until the next run
    )
    store = FeatureStore(repo_path=str(repo))
    store.apply([customer, view])
    return store


def rows_in_online_store(repo: Path) -> int:
    """Distinct entity keys that materialize wrote to the SQLite online store."""
    with sqlite3.connect(repo / "online.db") as conn:
        query = f'select count(distinct entity_key) from "{PROJECT}_{VIEW}"'
        return int(conn.execute(query).fetchone()[0])


def draw_lookups(keys: list[str], count: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """`count` random (key, row index) pairs; about ABSENT_SHARE of them absent, with index -1."""
    rows = rng.integers(0, len(keys), size=count)
    absent = rng.random(count) < ABSENT_SHARE
    return [
        (keys[r] + ABSENT_SUFFIX, -1) if a else (keys[r], int(r))
        for r, a in zip(rows, absent, strict=True)
    ]


def lookup(store: FeatureStore, keys: list[str]) -> list[Any]:
    """Scores for `keys` as a caller reads them: get_online_features, then to_dict."""
    rows = [{"customer_id": key} for key in keys]
    return store.get_online_features(features=[FEATURE], entity_rows=rows).to_dict()["score"]


def timed_lookups(
    store: FeatureStore, requests: list[list[tuple[str, int]]], scores: np.ndarray
) -> np.ndarray:
    """Milliseconds taken by each request after one untimed warm-up; checks every returned score."""
    lookup(store, [key for key, _ in requests[0]])
    elapsed_ns = np.empty(len(requests), dtype=np.int64)
    for i, request in enumerate(requests):
        keys = [key for key, _ in request]
        start = time.perf_counter_ns()
        got = lookup(store, keys)
        elapsed_ns[i] = time.perf_counter_ns() - start
        expected = [None if row < 0 else float(scores[row]) for _, row in request]
        if got != expected:
            bad = next(j for j, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
            sys.exit(
                f"Feast returned {got[bad]!r} for {keys[bad]!r}, the Parquet has {expected[bad]!r}"
            )
    return elapsed_ns / 1e6


def percentiles(ms: np.ndarray) -> dict[str, float]:
    """Median and 99th percentile of latencies in ms."""
    return {
        "p50": round(float(np.percentile(ms, 50)), 4),
        "p99": round(float(np.percentile(ms, 99)), 4),
    }


def main() -> None:
    args = parse_args()
    table = pq.read_table(args.scores, columns=["customer_id", "score", "scored_at"])
    keys: list[str] = table["customer_id"].to_pylist()
    scores = table["score"].to_numpy()
    if pc.count_distinct(table["customer_id"]).as_py() != len(keys):
        sys.exit(f"{args.scores}: customer_id is not unique; expected one row per customer")
    if pc.any(pc.ends_with(table["customer_id"], ABSENT_SUFFIX)).as_py():
        sys.exit(f"{args.scores}: a customer_id ends with {ABSENT_SUFFIX!r}, used for absent keys")
    # The whole range: materialize's end is exclusive, so one second past the latest row.
    first, last = pc.min_max(table["scored_at"]).values()
    start, end = first.as_py(), last.as_py() + timedelta(seconds=1)

    with tempfile.TemporaryDirectory(prefix="feast-bench-") as tmp:
        repo = Path(tmp)
        store = apply_repo(repo, args.scores)
        began = time.perf_counter()
        store.materialize(start_date=start, end_date=end)
        materialize_s = time.perf_counter() - began
        rows = rows_in_online_store(repo)
        if rows != len(keys):
            sys.exit(f"materialize wrote {rows} keys, the Parquet has {len(keys)}")

        rng = np.random.default_rng(args.seed)
        single = [draw_lookups(keys, 1, rng) for _ in range(args.single)]
        batches = [draw_lookups(keys, args.batch_size, rng) for _ in range(args.batches)]
        single_ms = timed_lookups(store, single, scores)
        batch_ms = timed_lookups(store, batches, scores)

    result = {
        "feast_version": feast.__version__,
        "rows": rows,
        "materialize_s": round(materialize_s, 3),
        "single_ms": percentiles(single_ms),
        "batch_ms": percentiles(batch_ms),
        "single_n": args.single,
        "batches": args.batches,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
