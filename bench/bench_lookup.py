"""Key lookup latency: prescore's `Scores` client and HTTP service against a dict, DuckDB, Feast.

Same keys, same scores, same requests. Predictions for every key (small: 1M, full: 10M) are
generated with numpy and published as prescore publishes them (`serving.build_snapshot`, then
`stage_pointer` and `move_pointer`). Then, round after round, each subject answers the same requests:

- baseline: a Python dict from key to score, in this process (the limit: no I/O, no checks);
- prescore: `Scores.get` for one key, `Scores.get_many` for a batch (the key file, read into memory);
- DuckDB: SQL on the snapshot's `predictions` table (sorted by key, no index: the BI and ad hoc way in), one query per request;
- Feast: bench/feast/measure.py in its own environment (SQLite online store), when installed.
- prescore HTTP: `prescore serve` in a subprocess on loopback, 4 client processes at once, each
  with one keep-alive `http.client` connection, over a sample of the same requests.

Latency is wall time per request, p50 and p99 over every request, with the calling thread's CPU
time at the same percentile in the note; about a tenth of the keys are absent. Build time is the
time to make the published keys servable.
"""

from __future__ import annotations

import gc
import http.client
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench import BENCH_DIR, DATA_DIR, Measurement
from bench.servers import prescore_service, running
from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.serving import keyindex, snapshot
from prescore.serving.client import Scores

BENCHMARK = "lookup"
KEYS = {"small": 1_000_000, "full": 10_000_000}
SINGLE_LOOKUPS = 20_000
BATCHES = 200
BATCH_SIZE = 1000
ROUNDS = 10  # the subjects take turns, a tenth of the requests each time
ABSENT_SHARE = 0.1
SEED = 42
RUN_DATE = date.today()  # scored this morning: the answers are fresh, as in production
DICT = "python dict"
PRESCORE = "prescore Scores"
DUCKDB = "duckdb query"
FEAST = "feast sqlite"
FEAST_PYTHON = BENCH_DIR / ".venv-feast" / "bin" / "python"
FEAST_MEASURE = BENCH_DIR / "feast" / "measure.py"
FEAST_SIZES = ("small",)
HTTP_CLIENTS = 4
HTTP = f"prescore HTTP ({HTTP_CLIENTS} clients)"
HTTP_SINGLES = 5_000  # a sample of the requests: every client process times its share
HTTP_BATCHES = 100
HTTP_CHECKED = 200  # single keys checked against `Scores` before timing, with the first batch

Request = list[str]


# ---------------------------------------------------------------- data


def customer_ids(numbers: np.ndarray, prefix: str) -> pa.Array:
    """'C00000042'-style keys (as prescore.demo.datagen makes them) for the given numbers."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 8, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def write_predictions(target: Path, keys: int) -> None:
    """One prediction row per key, in random key order, with the columns the score stage writes."""
    rng = np.random.default_rng(SEED)
    scored_at = datetime.combine(RUN_DATE, datetime.min.time()) + timedelta(hours=6)
    valid_until = datetime.combine(RUN_DATE + timedelta(days=7), datetime.min.time())
    table = pa.table(
        {
            "customer_id": customer_ids(rng.permutation(keys), "C"),
            "score": rng.random(keys),
            "model_name": pa.array(["prescore-churn"] * keys).dictionary_encode(),
            "model_version": pa.array(["1"] * keys).dictionary_encode(),
            "model_run_id": pa.array(["bench"] * keys).dictionary_encode(),
            "features_version": pa.array(np.zeros(keys, np.int64)),
            "scored_at": pa.array(np.full(keys, np.datetime64(scored_at, "us"))),
            "valid_until": pa.array(np.full(keys, np.datetime64(valid_until, "us"))),
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, row_group_size=1_000_000)


def predictions_file(size: str) -> Path:
    """The generated predictions of a size, written once and cached under bench/.data/."""
    path = DATA_DIR / f"lookup-{size}" / "predictions.parquet"
    if not path.exists():
        write_predictions(path, KEYS[size])
    return path


def draw_requests(
    keys: list[str], count: int, size: int, rng: np.random.Generator
) -> list[Request]:
    """`count` requests of `size` random keys; about ABSENT_SHARE of the keys are not published.

    An absent key has the shape of a real one ('X' for 'C'), so no subject can reject it by length.
    """
    picks = rng.integers(0, len(keys), (count, size))
    absent = rng.random((count, size)) < ABSENT_SHARE
    return [
        [("X" + keys[k][1:]) if a else keys[k] for k, a in zip(row, gone, strict=True)]
        for row, gone in zip(picks.tolist(), absent.tolist(), strict=True)
    ]


# ---------------------------------------------------------------- subjects


def bench_settings(size: str) -> tuple[Settings, UseCase]:
    settings = load_settings(env="test")
    state = DATA_DIR / f"lookup-{size}" / "state"
    settings = settings.model_copy(update={"state_dir": state})
    return settings, load_usecase("churn", settings)


def publish(settings: Settings, usecase: UseCase, predictions: Path) -> float:
    """Build the snapshot and its key file as the publish stage does; seconds taken."""
    began = time.perf_counter()
    built, _ = snapshot.build_usecase_snapshot(settings, usecase, RUN_DATE, 0, [str(predictions)])
    seconds = time.perf_counter() - began
    snapshot.move_pointer(snapshot.stage_pointer(settings, usecase, built.name))
    return seconds


def key_file_seconds(built: Path, usecase: UseCase) -> float:
    """Seconds to write the key file alone (read back from the snapshot): its share of the build."""
    columns = ", ".join([*usecase.keys, *keyindex.VALUE_COLUMNS])
    with duckdb.connect(str(built), read_only=True) as con:
        predictions = con.execute(f"select {columns} from {snapshot.PREDICTIONS}").to_arrow_table()
    target = built.with_name(f"rewritten{keyindex.SUFFIX}")
    began = time.perf_counter()
    keyindex.write_key_file(target, predictions, keys=usecase.keys, run_date=RUN_DATE)
    seconds = time.perf_counter() - began
    target.unlink()
    return seconds


def python_dict(predictions: Path) -> tuple[dict[str, float], float]:
    """The scores as a dict from key to score, and the seconds it took to load it."""
    began = time.perf_counter()
    table = pq.read_table(predictions, columns=["customer_id", "score"])
    scores = dict(zip(table["customer_id"].to_pylist(), table["score"].to_pylist(), strict=True))
    return scores, time.perf_counter() - began


class DuckDBLookups:
    """The pre-key-file path: the snapshot opened read-only, keys bound as parameters."""

    COLUMNS = "customer_id, score, model_name, model_version, scored_at, valid_until"

    def __init__(self, snapshot: Path) -> None:
        self.con = duckdb.connect(
            str(snapshot), read_only=True, config={"enable_external_access": False}
        )

    def get(self, key: str) -> float | None:
        sql = f"select {self.COLUMNS} from {snapshot.PREDICTIONS} where customer_id = ?"
        row = self.con.execute(sql, [key]).fetchone()
        return None if row is None else row[1]

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        """One query for the batch, answers put back in request order."""
        sql = f"select {self.COLUMNS} from {snapshot.PREDICTIONS} where customer_id in (select unnest(?))"
        found = {row[0]: row[1] for row in self.con.execute(sql, [list(keys)]).fetchall()}
        return [found.get(k) for k in keys]


def check_same_scores(answers: dict[str, list[float | None]]) -> None:
    """Every subject must give the same scores to the same keys, or the race is void."""
    expected = answers[DICT]
    for subject, got in answers.items():
        if got != expected:
            bad = next(i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
            raise RuntimeError(
                f"{subject} answered {got[bad]!r} at {bad}, the dict {expected[bad]!r}"
            )


@dataclass(frozen=True)
class Timings:
    """Milliseconds per request: wall time, and the CPU time of the thread (no waiting for a core)."""

    wall: np.ndarray
    cpu: np.ndarray

    def percentile(self, q: int) -> tuple[float, float]:
        return float(np.percentile(self.wall, q)), float(np.percentile(self.cpu, q))


def timed_in_turns(
    subjects: dict[str, Callable[[Request], object]], requests: list[Request]
) -> dict[str, Timings]:
    """Timings of each subject over every request; the subjects take turns, a slice of requests
    each, and each turn starts with an untimed request."""
    wall: dict[str, list[int]] = {name: [] for name in subjects}
    cpu: dict[str, list[int]] = {name: [] for name in subjects}
    for part in np.array_split(np.arange(len(requests)), ROUNDS):
        for name, call in subjects.items():
            # Untimed: the previous subject's turn (DuckDB scans 10M rows) emptied the CPU caches.
            call(requests[part[0]])
            for i in part.tolist():
                began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
                call(requests[i])
                cpu[name].append(time.thread_time_ns() - began_cpu)
                wall[name].append(time.perf_counter_ns() - began)
    return {
        name: Timings(np.array(wall[name]) / 1e6, np.array(cpu[name]) / 1e6) for name in subjects
    }


def feast_skipped(size: str) -> str | None:
    """Why Feast does not run at this size, or None when it does."""
    if not (FEAST_PYTHON.exists() and FEAST_MEASURE.exists()):
        where = FEAST_PYTHON.relative_to(BENCH_DIR.parent)
        return f"no {where} (bench/feast/setup.sh makes it)"
    if size not in FEAST_SIZES:
        return (
            f"not at size {size}: at 10M keys its materialize grew to 22 GB and was killed out of "
            "memory on the 24 GB development machine"
        )
    return None


def run_feast(predictions: Path, size: str) -> dict[str, Any]:
    """bench/feast/measure.py's figures over the same scores, in Feast's own environment."""
    scores = predictions.with_name("feast-scores.parquet")
    if not scores.exists():
        table = pq.read_table(predictions, columns=["customer_id", "score", "scored_at"])
        utc = table["scored_at"].cast(pa.timestamp("us", tz="UTC"))
        pq.write_table(table.set_column(2, "scored_at", utc), scores)
    out = DATA_DIR / f"lookup-{size}" / "feast.json"
    command = [str(FEAST_PYTHON), str(FEAST_MEASURE), "--scores", str(scores), "--out", str(out)]
    command += [
        "--single",
        str(SINGLE_LOOKUPS),
        "--batches",
        str(BATCHES),
        "--batch-size",
        str(BATCH_SIZE),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return dict(json.loads(out.read_text()))


# ---------------------------------------------------------------- HTTP service


def http_single(conn: http.client.HTTPConnection, key: str) -> bytes:
    """One GET; 200 for a published key, 404 for an absent one, anything else fails the run."""
    conn.request("GET", f"/v1/churn/scores/{quote(key, safe='')}")
    response = conn.getresponse()
    body = response.read()
    if response.status not in (200, 404):
        raise RuntimeError(f"GET {key!r}: HTTP {response.status} {body[:200]!r}")
    return body


def http_batch(conn: http.client.HTTPConnection, keys: Request) -> bytes:
    """One batch POST, the answer read whole (not parsed: that is the caller's business)."""
    payload = json.dumps({"keys": keys}).encode()
    conn.request("POST", "/v1/churn/scores:batch", payload, {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST batch: HTTP {response.status} {body[:200]!r}")
    return body


def http_scores(port: int, singles: list[Request], batch: Request) -> list[float | None]:
    """The service's scores for some single keys, then for one batch (the check before timing)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        out = [json.loads(http_single(conn, r[0]))["score"] for r in singles]
        out += [s["score"] for s in json.loads(http_batch(conn, batch))["scores"]]
    finally:
        conn.close()
    return out


def http_client(
    port: int,
    singles: list[Request],
    batches: list[Request],
    barrier: Any,
    results: Any,
    index: int,
) -> None:
    """One client process: one keep-alive connection; its singles, then its batches, each series
    started together with the other clients. Puts (index, single wall, single CPU, batch wall,
    batch CPU) in ns on `results`, or (index, error message)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        http_single(conn, singles[0][0])  # untimed: connect, warm up
        http_batch(conn, batches[0])
        calls: list[tuple[Callable[[Request], bytes], list[Request]]] = [
            (lambda r: http_single(conn, r[0]), singles),
            (lambda r: http_batch(conn, r), batches),
        ]
        timed: list[list[int]] = []
        for call, requests in calls:
            wall, cpu = [], []
            barrier.wait(timeout=120)
            for request in requests:
                began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
                call(request)
                cpu.append(time.thread_time_ns() - began_cpu)
                wall.append(time.perf_counter_ns() - began)
            timed += [wall, cpu]
        conn.close()
        results.put((index, *timed))
    except Exception as exc:  # reported to the parent, which fails the run
        barrier.abort()
        results.put((index, f"{type(exc).__name__}: {exc}"))


def timed_over_http(
    port: int, singles: list[Request], batches: list[Request]
) -> tuple[Timings, Timings]:
    """Single and batch timings of HTTP_CLIENTS client processes at once, each with its share."""
    context = multiprocessing.get_context("spawn")  # a fresh, small process: not a fork of this one
    barrier = context.Barrier(HTTP_CLIENTS)
    results = context.Queue()
    clients = [
        context.Process(
            target=http_client,
            args=(port, singles[i::HTTP_CLIENTS], batches[i::HTTP_CLIENTS], barrier, results, i),
            daemon=True,
        )
        for i in range(HTTP_CLIENTS)
    ]
    for client in clients:
        client.start()
    answers: list[tuple[Any, ...]] = []
    try:
        while len(answers) < len(clients):
            try:
                answers.append(results.get(timeout=1))
            except queue.Empty:
                if not any(c.is_alive() for c in clients) and results.empty():
                    raise RuntimeError("HTTP clients exited without an answer") from None
    finally:
        for client in clients:
            client.join(timeout=10)
            if client.is_alive():
                client.kill()
    errors = [a[1] for a in answers if isinstance(a[1], str)]
    if errors:
        raise RuntimeError(f"HTTP client failed: {errors[0]}")
    series = [np.concatenate([np.array(a[k]) for a in answers]) / 1e6 for k in range(1, 5)]
    return Timings(series[0], series[1]), Timings(series[2], series[3])


def http_measurements(
    settings: Settings,
    size: str,
    client: Scores,
    singles: list[Request],
    batches: list[Request],
) -> list[Measurement]:
    """Start the service, check a sample of its answers against `client`, time it, stop it."""
    singles, batches = singles[:HTTP_SINGLES], batches[:HTTP_BATCHES]
    server = prescore_service(settings, DATA_DIR / f"lookup-{size}" / "serve.log")
    with running(server):
        sample = singles[:HTTP_CHECKED]
        expected = [client.get(r[0]).score for r in sample]
        expected += [s.score for s in client.get_many(batches[0])]
        got = http_scores(server.port, sample, batches[0])
        if got != expected:
            bad = next(i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
            raise RuntimeError(f"{HTTP} answered {got[bad]!r} at {bad}, Scores {expected[bad]!r}")
        cpu_before = server.cpu_seconds()
        single, batch = timed_over_http(server.port, singles, batches)
        busy = server.cpu_seconds() - cpu_before
    server_cpu = f", server CPU {busy:.3g} s for all {len(singles) + len(batches):,} requests"
    load = os.getloadavg()[0]
    note = (
        f"prescore serve (uvicorn, 1 process) on loopback, {HTTP_CLIENTS} client processes at once, "
        f"one keep-alive http.client connection each, {len(singles):,} GETs then {len(batches)} "
        f"POSTs (answer read, not parsed){server_cpu}; clients and server share the cores "
        f"(load {load:.2f} after the run); CPU time is the client's"
    )
    return latencies(HTTP, single, batch, note)


# ---------------------------------------------------------------- measurements


def latency(subject: str, metric: str, ms: float, note: str) -> Measurement:
    return Measurement(
        benchmark=BENCHMARK,
        subject=subject,
        metric=metric,
        value=ms,
        unit="ms",
        higher_is_better=False,
        baseline=None if subject == DICT else DICT,
        note=note,
    )


def latencies(subject: str, single: Timings, batch: Timings, note: str) -> list[Measurement]:
    """Wall-time p50 and p99 per request; the CPU time of the same percentile goes in the note."""
    out = []
    for kind, timings in (("single key", single), (f"{BATCH_SIZE}-key batch", batch)):
        for q in (50, 99):
            wall, cpu = timings.percentile(q)
            out.append(
                latency(subject, f"{kind} p{q}", wall, f"{note}; CPU time p{q} {cpu:.4g} ms")
            )
    return out


def build(subject: str, seconds: float, rows: int, note: str) -> Measurement:
    return Measurement(
        benchmark=BENCHMARK,
        subject=subject,
        metric="build",
        value=seconds,
        unit="s",
        higher_is_better=False,
        baseline=None if subject == DICT else DICT,
        note=f"{note}; {rows:,} keys",
    )


def feast_measurements(predictions: Path, size: str) -> list[Measurement]:
    skipped = feast_skipped(size)
    if skipped:
        print(f"  {FEAST}: skipped, {skipped}", file=sys.stderr)
        return []
    figures = run_feast(predictions, size)
    note = f"feast {figures.get('feast_version', '?')}, get_online_features + to_dict, own process"
    single, batch = figures["single_ms"], figures["batch_ms"]
    return [
        latency(FEAST, "single key p50", single["p50"], note),
        latency(FEAST, "single key p99", single["p99"], note),
        latency(FEAST, f"{BATCH_SIZE}-key batch p50", batch["p50"], note),
        latency(FEAST, f"{BATCH_SIZE}-key batch p99", batch["p99"], note),
        build(FEAST, figures["materialize_s"], figures["rows"], "materialize into SQLite"),
    ]


# ---------------------------------------------------------------- run


def run(size: str) -> list[Measurement]:
    predictions = predictions_file(size)
    settings, usecase = bench_settings(size)
    build_s = publish(settings, usecase, predictions)
    scores_dict, dict_s = python_dict(predictions)
    keys = list(scores_dict)
    rng = np.random.default_rng(SEED)
    singles = draw_requests(keys, SINGLE_LOOKUPS, 1, rng)
    batches = draw_requests(keys, BATCHES, BATCH_SIZE, rng)

    # The collector would walk the 10M-entry dict and key list on the clock of whichever subject
    # allocates enough to trigger it (prescore's Score objects): freeze what is loaded so far.
    gc.collect()
    gc.freeze()
    client = Scores(usecase, settings)
    old = DuckDBLookups(client.snapshot)
    try:
        check_same_scores(
            {
                DICT: [scores_dict.get(k) for k in batches[0]],
                PRESCORE: [s.score for s in client.get_many(batches[0])],
                DUCKDB: old.get_many(batches[0]),
            }
        )
        single = timed_in_turns(
            {
                DICT: lambda r: scores_dict.get(r[0]),
                PRESCORE: lambda r: client.get(r[0]),
                DUCKDB: lambda r: old.get(r[0]),
            },
            singles,
        )
        batch = timed_in_turns(
            {
                DICT: lambda r: [scores_dict.get(k) for k in r],
                PRESCORE: client.get_many,
                DUCKDB: old.get_many,
            },
            batches,
        )
        # After the in-process subjects: the server and its clients would load the cores under them.
        http = http_measurements(settings, size, client, singles, batches)
    finally:
        client.close()
        old.con.close()
    rows = len(keys)
    key_file_s = key_file_seconds(snapshot.snapshot_path(settings, usecase, RUN_DATE, 0), usecase)
    return [
        *latencies(DICT, single[DICT], batch[DICT], "dict.get per key, scores only"),
        *latencies(PRESCORE, single[PRESCORE], batch[PRESCORE], "Score objects with freshness"),
        *latencies(
            DUCKDB, single[DUCKDB], batch[DUCKDB], "single: where key = ?; batch: in (unnest(?))"
        ),
        *http,
        *feast_measurements(predictions, size),
        build(DICT, dict_s, rows, "read the Parquet, build the dict"),
        build(
            PRESCORE,
            build_s,
            rows,
            f"serving.build_snapshot: DuckDB file + key file (the key file alone: {key_file_s:.3g} s)",
        ),
    ]
