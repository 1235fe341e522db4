"""Scores computed on demand: prescore's HTTP service against `mlflow models serve`, and a batch
lookup that computes the keys it misses against one that misses none.

Same model, same rows, same machine, same run. A native XGBoost model with the churn use case's
parameters is trained on generated churn rows (prescore.demo.datagen, minus the rows clean would
quarantine), its preprocessing fitted on them with pandas, and registered as the use case's
@champion model package in a state folder under bench/.data/ (no Spark). The registered package
scores the first KEYS[size] customers, which are published as a snapshot (as publish builds it);
the next UNPUBLISHED customers are left out: the keys a lookup misses. The servers run on
127.0.0.1, started and stopped here, one process each:

- `prescore serve --usecase churn` (uvicorn, as a deployment starts it);
- the same with a copy of conf/ whose churn.yaml leaves `score.explain` out (the price of the
  reasons), in the compute race only;
- baseline `mlflow models serve` of the same @champion version (`--env-manager local`, `-w 1`),
  sent the same rows as `dataframe_split`.

Timed, over one keep-alive `http.client` connection per server, the subjects taking turns in
ROUNDS rounds (each turn after an untimed request), every body made before the clock starts and
every answer read whole but not parsed:

- `POST /v1/churn/scores:compute` with 1 row, and with 1,000 rows, against mlflow's
  `/invocations` with the same rows (issue targets: prescore at least 5x faster at p99 for one
  row, 2x for 1,000). churn.yaml sets `score.explain: {top_k: 3}`: prescore's answers carry
  each score's reasons (exact TreeSHAP), mlflow's are scores only; measured as configured, and
  without reasons by the second server. prescore is sent each row with its key (a row without
  one is answered 500 in this branch), mlflow the features only.
- `POST /v1/churn/scores:batch` of 1,000 keys with their rows of features, 10 of the keys not
  published (computed from their rows, the other 990 served from the snapshot), against the
  same endpoint with 1,000 published keys and no features (target: p99 within 1.5x, a ratio of
  at least 0.67). The same pair through the Python client, `Scores.get_many(keys,
  features=rows)` against `Scores.get_many(keys)`, in this process.

Before any timing, prescore's computed scores must equal mlflow's for the same rows to 1e-6,
and both lookups' scores too (the snapshot holds what the model gives), or the race is void.
Latency is wall time per request, p50 and p99; the notes give the servers' CPU time per request
and the load average before and after each series. Environment variable BENCH_COMPUTE_REQUESTS
caps the requests of every series (a smoke run); results of such a run are not the benchmark's.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import DATA_DIR, Measurement
from bench.bench_score import write_valid_rows
from bench.servers import Service, free_port, prescore_service, running
from prescore.config import LearnedLevels, Settings, UseCase, load_settings, load_usecase
from prescore.platform import registry
from prescore.serving import snapshot
from prescore.serving.client import Scores
from prescore.training.package import Package, Preprocessing, preprocessing_from
from prescore.training.pyfunc import register_package

if TYPE_CHECKING:
    import pandas as pd

BENCHMARK = "compute"
KEYS = {"small": 100_000, "full": 1_000_000}  # published
UNPUBLISHED = 10_000  # generated after them, never published: the keys a lookup misses
SINGLES = {"small": 1_000, "full": 10_000}  # requests per subject
BATCHES = {"small": 200, "full": 1_000}
REQUESTS_ENV = "BENCH_COMPUTE_REQUESTS"  # caps every series: a smoke run
BATCH_SIZE = 1_000
MISSED = 10  # keys of a fallback batch that are not published: 1%
TRAIN_ROWS = 50_000
CORES = 2
ROUNDS = 10  # the subjects take turns, a tenth of the requests each time
CHECKED = 50  # single rows checked against mlflow before timing (also a warm-up)
TOLERANCE = 1e-6
RUN_DATE = date.today()  # scored this morning: fresh answers, as in production
SEED = 42
DONE = "_done"  # written last in a folder of generated rows (pyarrow skips files named _*)
COMPUTE_PATH = "/v1/churn/scores:compute"
BATCH_PATH = "/v1/churn/scores:batch"
MLFLOW_PATH = "/invocations"
PRESCORE = "prescore scores:compute"
NO_REASONS = "prescore scores:compute, no reasons"
MLFLOW = "mlflow models serve"
HTTP_FOUND = "prescore HTTP scores:batch, every key published"
HTTP_FALLBACK = "prescore HTTP scores:batch + features, 1% computed"
CLIENT_FOUND = "prescore Scores.get_many, every key published"
CLIENT_FALLBACK = "prescore Scores.get_many + features, 1% computed"


# ---------------------------------------------------------------- data and model


def bench_settings(size: str) -> tuple[Settings, UseCase]:
    """The test settings (conf/env/test.yaml) on a new state folder of this size."""
    settings = load_settings(env="test")
    state = DATA_DIR / f"compute-{size}" / "state"
    shutil.rmtree(state, ignore_errors=True)  # one model version and one snapshot per run
    settings = settings.model_copy(update={"state_dir": state})
    return settings, load_usecase("churn", settings)


def customer_rows(usecase: UseCase, size: str) -> pa.Table:
    """Key, features and label of KEYS[size] + UNPUBLISHED generated customers that clean would
    keep (one row each), generated once per size under bench/.data/."""
    folder = DATA_DIR / f"compute-{size}" / "rows"
    wanted = KEYS[size] + UNPUBLISHED
    if not (folder / DONE).exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_valid_rows(usecase, int(wanted * 1.02), folder)  # about 1% are quarantined
        (folder / DONE).touch()
    table = pq.read_table(folder, columns=[*usecase.keys, *usecase.features, usecase.label])
    if table.num_rows < wanted:
        raise RuntimeError(f"{folder}: {table.num_rows:,} rows, {wanted:,} wanted; delete it")
    return table.slice(0, wanted)


def fitted_stats(train: pd.DataFrame, usecase: UseCase) -> dict[str, Any]:
    """What data.cleaning.fit_aggregates computes in Spark, with pandas on the training rows."""
    stats: dict[str, Any] = {"rows": len(train)}
    for column, rule in usecase.cleaning.impute.items():
        values = train[column].dropna()
        if rule.strategy in ("mean", "median"):
            stats[f"{rule.strategy}__{column}"] = float(getattr(values, rule.strategy)())
        elif rule.strategy == "mode":
            stats[f"mode__{column}"] = values.mode().min()
    for column, outlier in usecase.cleaning.outliers.items():
        values = train[column].astype("float64").dropna()
        if outlier.method == "iqr":
            stats[f"quartiles__{column}"] = [values.quantile(0.25), values.quantile(0.75)]
        else:
            stats[f"zmean__{column}"], stats[f"zstd__{column}"] = values.mean(), values.std()
    return stats


def levels_of(train: pd.DataFrame, column: str, how: LearnedLevels) -> list[str]:
    """`levels: auto` learned as training.package.learned_levels learns them."""
    counts = train[column].dropna().astype(str).value_counts()
    counts = counts[counts >= how.min_count]
    ranked = sorted(counts.items(), key=lambda level: (-level[1], level[0]))
    return [str(level) for level, _ in ranked[: how.max_levels]]


def fitted_preprocessing(train: pd.DataFrame, usecase: UseCase) -> Preprocessing:
    """What training.package.fit_preprocessing fits in Spark, from pandas statistics: the
    benchmark starts no Spark session."""
    return preprocessing_from(
        usecase, fitted_stats(train, usecase), lambda name, how: levels_of(train, name, how)
    )


def trained_package(rows: pa.Table, usecase: UseCase) -> tuple[Package, pd.DataFrame]:
    """A native XGBoost model with the use case's parameters on the first TRAIN_ROWS rows, in a
    package with its preprocessing; and a few raw rows as the model's input example."""
    import xgboost

    train = rows.slice(0, TRAIN_ROWS).to_pandas()
    preprocessing = fitted_preprocessing(train, usecase)
    model = xgboost.XGBClassifier(**usecase.model.params, n_jobs=CORES)
    model.fit(preprocessing.frame_matrix(train), train[usecase.label])
    return Package(preprocessing, model.get_booster()), train[usecase.features].head(5)


def predictions(
    package: Package, usecase: UseCase, ref: registry.ModelRef, rows: pa.Table
) -> pa.Table:
    """The score stage's output for `rows`: scores (and reasons, with score.explain) from the
    package, stamped with the model version and the run date."""
    matrix = package.preprocessing.matrix({f: rows.column(f) for f in package.features})
    n = rows.num_rows
    scored_at = datetime.combine(RUN_DATE, datetime.min.time()) + timedelta(hours=6)
    valid_until = datetime.combine(RUN_DATE + timedelta(days=7), datetime.min.time())
    columns: dict[str, Any] = {
        **{key: rows.column(key) for key in usecase.published_keys},
        "score": pa.array(package.predict_matrix(matrix), pa.float64()),
        "model_name": pa.array([ref.name] * n).dictionary_encode(),
        "model_version": pa.array([ref.version] * n).dictionary_encode(),
        "model_run_id": pa.array([ref.run_id] * n).dictionary_encode(),
        "features_version": pa.array(np.zeros(n, np.int64)),
        "scored_at": pa.array(np.full(n, np.datetime64(scored_at, "us"))),
        "valid_until": pa.array(np.full(n, np.datetime64(valid_until, "us"))),
    }
    explain = usecase.score.explain
    if explain is not None:
        columns["reasons"] = package.explain(
            matrix, top_k=explain.top_k, approximate=explain.approximate
        )
    return pa.table(columns)


def publish(settings: Settings, usecase: UseCase, table: pa.Table) -> None:
    """Build the snapshot from the predictions and point current at it, as publish does."""
    path = settings.state_dir / "predictions.parquet"
    pq.write_table(table, path)
    built, _ = snapshot.build_usecase_snapshot(settings, usecase, RUN_DATE, 0, [str(path)])
    snapshot.move_pointer(snapshot.stage_pointer(settings, usecase, built.name))


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Workload:
    """The rows behind every request: indices into `rows`, whose first `published` rows are in
    the snapshot. Bodies are made from them request by request, before the clock starts."""

    rows: pa.Table
    key: str
    features: list[str]
    published: int
    singles: np.ndarray  # (requests, 1)
    batches: np.ndarray  # (requests, BATCH_SIZE): any customers, for scores:compute
    found: np.ndarray  # (requests, BATCH_SIZE): published customers only
    fallback: np.ndarray  # the same with MISSED unpublished customers in each batch

    def frame(self, which: np.ndarray) -> pd.DataFrame:
        return self.rows.select(self.features).take(pa.array(which)).to_pandas()

    def keys(self, which: np.ndarray) -> list[str]:
        return [str(k) for k in self.rows.column(self.key).take(pa.array(which)).to_pylist()]

    def missed(self, which: np.ndarray) -> np.ndarray:
        return which >= self.published


def request_counts(size: str) -> tuple[int, int]:
    """Single-row and batch requests per subject, capped by BENCH_COMPUTE_REQUESTS if set."""
    cap = int(os.environ.get(REQUESTS_ENV) or 0)
    singles, batches = SINGLES[size], BATCHES[size]
    return (min(singles, cap), min(batches, cap)) if cap else (singles, batches)


def workload(rows: pa.Table, usecase: UseCase, size: str) -> Workload:
    rng = np.random.default_rng(SEED)
    published = KEYS[size]
    singles, batches = request_counts(size)
    fallback = rng.integers(0, published, (batches, BATCH_SIZE))
    for batch in fallback:
        slots = rng.choice(BATCH_SIZE, MISSED, replace=False)
        batch[slots] = published + rng.choice(UNPUBLISHED, MISSED, replace=False)
    return Workload(
        rows=rows,
        key=usecase.keys[0],
        features=usecase.features,
        published=published,
        singles=rng.integers(0, rows.num_rows, (singles, 1)),
        batches=rng.integers(0, rows.num_rows, (batches, BATCH_SIZE)),
        found=rng.integers(0, published, (batches, BATCH_SIZE)),
        fallback=fallback,
    )


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a Python caller holds them: Python scalars, None for a missing value."""
    return list(frame.astype(object).where(frame.notna(), None).to_dict(orient="records"))


def compute_body(work: Workload, which: np.ndarray) -> bytes:
    """The rows with their key: a row without one is answered 500 (see bench/README.md)."""
    keys = work.keys(which)
    rows = [{work.key: k, **row} for k, row in zip(keys, records(work.frame(which)), strict=True)]
    return json.dumps({"rows": rows}).encode()


def mlflow_body(work: Workload, which: np.ndarray) -> bytes:
    """The same rows as mlflow's scoring server takes them (pandas' split orientation)."""
    rows = [list(row.values()) for row in records(work.frame(which))]
    return json.dumps({"dataframe_split": {"columns": work.features, "data": rows}}).encode()


def lookup_body(work: Workload, which: np.ndarray) -> bytes:
    return json.dumps({"keys": work.keys(which)}).encode()


def fallback_body(work: Workload, which: np.ndarray) -> bytes:
    """The keys with a row of features each: those not published are computed from theirs."""
    body = {"keys": work.keys(which), "features": records(work.frame(which))}
    return json.dumps(body).encode()


def client_request(work: Workload, which: np.ndarray) -> tuple[list[str], list[dict[str, Any]]]:
    """Keys and their rows of features, for `Scores.get_many`."""
    return work.keys(which), records(work.frame(which))


# ---------------------------------------------------------------- servers


class Connection:
    """One keep-alive connection to a loopback server; opened again, once, when the server
    closed it while idle (uvicorn's keep-alive timeout: 5 s), which the untimed request that
    starts each turn takes."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=120)
        self.reconnects = 0

    def post(self, path: str, body: bytes) -> bytes:
        try:
            return self._post(path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.reconnects += 1
            return self._post(path, body)

    def _post(self, path: str, body: bytes) -> bytes:
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {response.status} {answer[:300]!r}")
        return answer

    def close(self) -> None:
        self.conn.close()


def prescore_compute_service(
    settings: Settings, folder: Path, name: str = PRESCORE, conf_dir: Path | None = None
) -> Service:
    """`prescore serve --usecase churn` on the bench's state folder (and `conf_dir`, if given)."""
    log = folder / ("prescore-no-reasons.log" if conf_dir else "prescore.log")
    return prescore_service(settings, log, name=name, conf_dir=conf_dir)


def conf_without_reasons(settings: Settings, folder: Path) -> Path:
    """A copy of conf/ whose churn.yaml leaves score.explain out (its comments dropped)."""
    import yaml

    target = folder / "conf-no-reasons"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(settings.conf_dir, target, ignore=shutil.ignore_patterns("usecases"))
    churn = yaml.safe_load((settings.conf_dir / "usecases" / "churn.yaml").read_text())
    churn["score"].pop("explain", None)
    (target / "usecases").mkdir()
    (target / "usecases" / "churn.yaml").write_text(yaml.safe_dump(churn, sort_keys=False))
    return target


def mlflow_service(settings: Settings, usecase: UseCase, folder: Path) -> Service:
    """`mlflow models serve` of the @champion as a deployment starts it: the local environment,
    one worker, `uvicorn` from the venv's PATH."""
    port = free_port()
    uri = f"models:/{registry.model_name(settings, usecase)}@{registry.CHAMPION}"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "PATH": path}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    return Service(MLFLOW, command, env, "/ping", port, folder / "mlflow.log")


# ---------------------------------------------------------------- checks


def prescore_scores(answer: bytes) -> list[dict[str, Any]]:
    return list(json.loads(answer)["scores"])


def mlflow_scores(mlflow: Connection, work: Workload, which: np.ndarray) -> np.ndarray:
    predictions = json.loads(mlflow.post(MLFLOW_PATH, mlflow_body(work, which)))["predictions"]
    return np.asarray(predictions, dtype=np.float64)


def check_close(subject: str, got: list[float | None], expected: np.ndarray) -> None:
    """Every score within TOLERANCE of mlflow's for the same row, or the race is void."""
    scores = np.asarray([np.nan if g is None else g for g in got], dtype=np.float64)
    far = np.flatnonzero(~(np.abs(scores - expected) <= TOLERANCE))
    if far.size:
        i = int(far[0])
        raise RuntimeError(f"{subject} scored {got[i]!r} at {i}, mlflow {expected[i]!r}")


def check_sources(subject: str, answers: list[dict[str, Any]], missed: np.ndarray) -> None:
    """The keys not published computed, the others served from the snapshot."""
    want = np.where(missed, "computed", "precomputed").tolist()
    got = [a["source"] for a in answers]
    if got != want:
        i = next(i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w)
        raise RuntimeError(f"{subject}: source {got[i]!r} at {i}, expected {want[i]!r}")


def check_compute(prescore: Connection, mlflow: Connection, work: Workload, top_k: int) -> None:
    """Computed scores are mlflow's, one row at a time and 1,000 at once, each with `top_k`
    reasons."""
    name = prescore.service.name
    for which in [*work.singles[:CHECKED], work.batches[0]]:
        answers = prescore_scores(prescore.post(COMPUTE_PATH, compute_body(work, which)))
        check_close(name, [a["score"] for a in answers], mlflow_scores(mlflow, work, which))
        if any(len(a["reasons"] or []) != top_k for a in answers):
            raise RuntimeError(f"{name}: answers without their {top_k} reasons")


def check_lookups(
    prescore: Connection, mlflow: Connection, work: Workload
) -> dict[str, np.ndarray]:
    """Both lookups' scores are mlflow's for the keys' rows (the snapshot holds what the model
    gives), each key from where it should come; returns mlflow's scores of the checked batches."""
    expected = {}
    for subject, which, body in (
        (HTTP_FOUND, work.found[0], lookup_body),
        (HTTP_FALLBACK, work.fallback[0], fallback_body),
    ):
        answers = prescore_scores(prescore.post(BATCH_PATH, body(work, which)))
        expected[subject] = mlflow_scores(mlflow, work, which)
        check_close(subject, [a["score"] for a in answers], expected[subject])
        check_sources(subject, answers, work.missed(which))
    return expected


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Subject:
    """How one subject makes request i's payload (untimed) and sends it (timed); `server`, the
    process whose CPU time it costs, if another."""

    payload: Callable[[int], Any]
    send: Callable[[Any], object]
    server: Service | None = None


@dataclass(frozen=True)
class Series:
    """One series of requests: milliseconds per request of each subject, its server's CPU
    milliseconds per request (each turn's untimed request included), the load around it."""

    times: dict[str, np.ndarray]
    server_cpu: dict[str, float]
    load: str


def load_average() -> str:
    return "{:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())


def http_subject(
    connection: Connection,
    path: str,
    body: Callable[[Workload, np.ndarray], bytes],
    work: Workload,
    requests: np.ndarray,
) -> Subject:
    """POSTs to `path` of request i's rows (requests[i]) as `body` makes them."""
    return Subject(
        payload=lambda i: body(work, requests[i]),
        send=partial(connection.post, path),
        server=connection.service,
    )


def timed_in_turns(subjects: dict[str, Subject], count: int) -> Series:
    """Each subject over `count` requests; the subjects take turns, a slice of the requests
    each, and each turn starts with an untimed request (the other subject's turn cooled the
    caches, and the server may have closed the idle connection)."""
    load_before = load_average()
    times: dict[str, list[int]] = {name: [] for name in subjects}
    cpu = dict.fromkeys(subjects, 0.0)
    for part in np.array_split(np.arange(count), ROUNDS):
        for name, subject in subjects.items():
            cpu_before = subject.server.cpu_seconds() if subject.server else 0.0
            subject.send(subject.payload(int(part[0])))
            for i in part.tolist():
                payload = subject.payload(i)
                began = time.perf_counter_ns()
                subject.send(payload)
                times[name].append(time.perf_counter_ns() - began)
            if subject.server:
                cpu[name] += subject.server.cpu_seconds() - cpu_before
    sent = count + ROUNDS
    return Series(
        times={name: np.array(ns) / 1e6 for name, ns in times.items()},
        server_cpu={n: 1000 * cpu[n] / sent for n, s in subjects.items() if s.server},
        load=f"load 1/5/15 min {load_before} before, {load_average()} after",
    )


def latencies(
    subject: str, kind: str, series: Series, baseline: str, note: str
) -> list[Measurement]:
    """Wall-time p50 and p99 per request, against `baseline` (a subject of the same series)."""
    ms = series.times[subject]
    cpu = series.server_cpu.get(subject)
    server = "" if cpu is None else f"; server CPU {cpu:.3g} ms a request"
    return [
        Measurement(
            benchmark=BENCHMARK,
            subject=subject,
            metric=f"{kind} p{q}",
            value=float(np.percentile(ms, q)),
            unit="ms",
            higher_is_better=False,
            baseline=None if subject == baseline else baseline,
            note=f"{note}; {len(ms):,} requests{server}; {series.load}",
        )
        for q in (50, 99)
    ]


def explain_note(usecase: UseCase) -> str:
    explain = usecase.score.explain
    if explain is None:
        return "no score.explain: prescore answers without reasons"
    how = "approximate (Saabas)" if explain.approximate else "exact TreeSHAP"
    return (
        f"churn.yaml's score.explain (top {explain.top_k}, {how}): {PRESCORE} answers carry "
        f"reasons, {NO_REASONS} is the same server with score.explain left out"
    )


def compute_measurements(
    servers: dict[str, Connection], work: Workload, usecase: UseCase
) -> list[Measurement]:
    """scores:compute against mlflow's /invocations, one row a request, then 1,000; `servers`
    by subject name, mlflow's the baseline."""
    out = []
    for kind, requests, target in (
        ("compute single row", work.singles, 5),
        (f"compute {BATCH_SIZE:,}-row batch", work.batches, 2),
    ):
        subjects = {
            name: http_subject(conn, MLFLOW_PATH, mlflow_body, work, requests)
            if name == MLFLOW
            else http_subject(conn, COMPUTE_PATH, compute_body, work, requests)
            for name, conn in servers.items()
        }
        series = timed_in_turns(subjects, len(requests))
        note = (
            f"{requests.shape[1]:,} row(s) a request, one keep-alive connection per server, "
            f"answer read, not parsed; {explain_note(usecase)}, mlflow's scores only "
            f"(dataframe_split in); issue target: prescore at least {target}x faster at p99"
        )
        for name in servers:
            out += latencies(name, kind, series, MLFLOW, note)
    return out


def lookup_note(work: Workload) -> str:
    return (
        f"{BATCH_SIZE:,} keys of {work.published:,} published; with features: {MISSED} keys not "
        f"published (computed), a row of features sent for every key; issue target: p99 within "
        f"1.5x of the batch without misses (ratio at least 0.67)"
    )


def http_lookup_measurements(prescore: Connection, work: Workload) -> list[Measurement]:
    """scores:batch with 1% of the keys computed from their features against one without."""
    subjects = {
        HTTP_FOUND: http_subject(prescore, BATCH_PATH, lookup_body, work, work.found),
        HTTP_FALLBACK: http_subject(prescore, BATCH_PATH, fallback_body, work, work.fallback),
    }
    series = timed_in_turns(subjects, len(work.found))
    note = f"{lookup_note(work)}; one keep-alive connection, answer read, not parsed"
    kind = f"lookup {BATCH_SIZE:,}-key batch"
    return [
        *latencies(HTTP_FOUND, kind, series, HTTP_FOUND, note),
        *latencies(HTTP_FALLBACK, kind, series, HTTP_FOUND, note),
    ]


def check_client(client: Scores, work: Workload, expected: dict[str, np.ndarray]) -> None:
    """The client's scores of the checked batches are the service's (mlflow's); the fallback
    check also loads the model, untimed."""
    keys, _ = client_request(work, work.found[0])
    check_close(CLIENT_FOUND, [s.score for s in client.get_many(keys)], expected[HTTP_FOUND])
    keys, rows = client_request(work, work.fallback[0])
    found = client.get_many(keys, features=rows)
    check_close(CLIENT_FALLBACK, [s.score for s in found], expected[HTTP_FALLBACK])


def client_lookup_measurements(
    settings: Settings, usecase: UseCase, work: Workload, expected: dict[str, np.ndarray]
) -> list[Measurement]:
    """The same pair through the Python client, `Scores.get_many`, in this process."""
    client = Scores(usecase, settings)
    try:
        check_client(client, work, expected)
        subjects = {
            CLIENT_FOUND: Subject(
                lambda i: work.keys(work.found[i]), lambda keys: client.get_many(keys)
            ),
            CLIENT_FALLBACK: Subject(
                lambda i: client_request(work, work.fallback[i]),
                lambda request: client.get_many(request[0], features=request[1]),
            ),
        }
        series = timed_in_turns(subjects, len(work.found))
    finally:
        client.close()
    kind = f"lookup {BATCH_SIZE:,}-key batch"
    note = f"{lookup_note(work)}; in process, Score objects returned"
    return [
        *latencies(CLIENT_FOUND, kind, series, CLIENT_FOUND, note),
        *latencies(CLIENT_FALLBACK, kind, series, CLIENT_FOUND, note),
    ]


def compute_services(settings: Settings, usecase: UseCase, folder: Path) -> dict[str, Service]:
    """The servers of the compute race by subject name: prescore as configured, prescore
    without reasons when the use case explains its scores, and mlflow."""
    services = {PRESCORE: prescore_compute_service(settings, folder)}
    if usecase.score.explain is not None:
        conf = conf_without_reasons(settings, folder)
        services[NO_REASONS] = prescore_compute_service(settings, folder, NO_REASONS, conf)
    return services | {MLFLOW: mlflow_service(settings, usecase, folder)}


def http_measurements(
    settings: Settings, usecase: UseCase, work: Workload, folder: Path
) -> tuple[list[Measurement], dict[str, np.ndarray]]:
    """Start the servers, check their answers, time them, stop them; with mlflow's scores of
    the checked lookup batches."""
    services = compute_services(settings, usecase, folder)
    with running(*services.values()):
        servers = {name: Connection(service) for name, service in services.items()}
        explain = usecase.score.explain
        top_k = {PRESCORE: 0 if explain is None else explain.top_k, NO_REASONS: 0}
        for name, conn in servers.items():
            if name != MLFLOW:
                check_compute(conn, servers[MLFLOW], work, top_k[name])
        expected = check_lookups(servers[PRESCORE], servers[MLFLOW], work)
        out = compute_measurements(servers, work, usecase)
        out += http_lookup_measurements(servers[PRESCORE], work)
        for conn in servers.values():
            conn.close()
            if conn.reconnects:
                print(
                    f"  {conn.service.name}: connection opened again {conn.reconnects} times "
                    "(closed while idle)",
                    file=sys.stderr,
                )
    return out, expected


# ---------------------------------------------------------------- run


def run(size: str) -> list[Measurement]:
    settings, usecase = bench_settings(size)
    folder = settings.state_dir.parent
    rows = customer_rows(usecase, size)
    package, example = trained_package(rows, usecase)
    ref = register_package(
        settings, usecase, package, alias=registry.CHAMPION, input_example=example
    )
    served = registry.load_package(ref)  # the package both servers load
    publish(settings, usecase, predictions(served, usecase, ref, rows.slice(0, KEYS[size])))
    work = workload(rows, usecase, size)
    gc.collect()
    gc.freeze()  # the rows and the model: not walked by the collector on a subject's clock
    measured, expected = http_measurements(settings, usecase, work, folder)
    return measured + client_lookup_measurements(settings, usecase, work, expected)
