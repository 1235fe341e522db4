"""A served snapshot damaged under a running `prescore serve`: its key file and DuckDB file
truncated in place, then deleted, while readers loop over two use cases. The process lives, the
other use case answers every request, the damaged one answers 503 (never 500) and /readyz names
it, and a publish brings it back without a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from prescore.config import Settings, load_usecase
from prescore.serving import keyindex
from support import publish_snapshot

pytestmark = pytest.mark.reliability
RUN_DATE = date(2026, 11, 5)
CUSTOMERS = [f"C{i:06d}" for i in range(500)]
SERIES = [(f"S{s:03d}", f"I{i:03d}") for s in range(10) for i in range(10)]
TARGETS = [RUN_DATE + timedelta(days=d) for d in range(1, 8)]


def churn_score(i: int) -> float:
    return i / 1000


def forecast_score(i: int) -> float:
    return float(i)


@dataclass
class Reader:
    """One thread looking keys up in a loop over its own keep-alive connection."""

    base_url: str
    paths: list[tuple[str, float]]  # (lookup path, expected score)
    phase: list[str]  # shared: what the test is doing to the files now
    seen: Counter[tuple[str, int]] = field(default_factory=Counter)  # (phase, status) -> count
    wrong: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            i = 0
            while not self.stop.is_set():
                path, score = self.paths[i % len(self.paths)]
                phase = self.phase[0]
                try:
                    response = http.get(path)
                except httpx.HTTPError as exc:
                    self.seen[(phase, -1)] += 1
                    self.wrong.append(f"{path}: {exc!r}")
                    time.sleep(0.05)  # a dead server: do not spin
                    continue
                self.seen[(phase, response.status_code)] += 1
                if response.status_code == 200 and response.json()["score"] != score:
                    self.wrong.append(f"{path}: {response.json()['score']} != {score}")
                i += 1


@pytest.fixture
def two_usecases(settings: Settings, tmp_path: Path) -> tuple[Settings, Path, Path]:
    """churn and forecast published in a fresh state folder: (settings, churn's snapshot, forecast's)."""
    state = settings.model_copy(update={"state_dir": tmp_path / "state"})
    churn, forecast = load_usecase("churn", state), load_usecase("forecast", state)
    churn_rows = [(k, churn_score(i)) for i, k in enumerate(CUSTOMERS)]
    forecast_rows = [
        (store, item, target, forecast_score(i))
        for i, ((store, item), target) in enumerate(
            (series, target) for series in SERIES for target in TARGETS
        )
    ]
    return (
        state,
        publish_snapshot(state, churn, churn_rows, 1),
        publish_snapshot(state, forecast, forecast_rows, 1),
    )


@pytest.fixture
def server(
    two_usecases: tuple[Settings, Path, Path],
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`prescore serve` for churn and forecast on a free loopback port: (process, base URL)."""
    state = two_usecases[0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(state.state_dir)}
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [
        prescore,
        "serve",
        "--port",
        str(port),
        "--usecase",
        "churn",
        "--usecase",
        "forecast",
    ]
    log = (state.state_dir / "serve.log").open("w")  # a file: a pipe nobody reads would fill
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (state.state_dir / "serve.log").read_text()
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prescore serve did not become ready"
            time.sleep(0.1)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def truncate_in_place(path: Path) -> None:
    """Cut a file to half its size, same inode (as a careless copy or an NFS writer does)."""
    path.chmod(0o644)  # published files may be read-only; their owner can still do this
    os.truncate(path, path.stat().st_size // 2)


def test_damaged_served_files_take_down_only_their_use_case(
    two_usecases: tuple[Settings, Path, Path], server: tuple[subprocess.Popen[str], str]
) -> None:
    state, churn_snapshot, _ = two_usecases
    process, base_url = server
    phase = ["healthy"]
    churn_paths = [(f"/v1/churn/scores/{k}", churn_score(i)) for i, k in enumerate(CUSTOMERS)]
    forecast_paths = [
        (f"/v1/forecast/scores/{store},{item},{target.isoformat()}", forecast_score(i))
        for i, ((store, item), target) in enumerate(
            (series, target) for series in SERIES for target in TARGETS
        )
    ]
    churn_reader = Reader(base_url, churn_paths, phase)
    forecast_reader = Reader(base_url, forecast_paths, phase)
    threads = [threading.Thread(target=r.run) for r in (churn_reader, forecast_reader)]
    for thread in threads:
        thread.start()
    readiness: dict[str, Any] = {}
    try:
        time.sleep(0.5)
        phase[0] = "truncated"
        for path in (keyindex.key_file(churn_snapshot), churn_snapshot):
            truncate_in_place(path)
        time.sleep(1.0)
        ready = httpx.get(f"{base_url}/readyz", timeout=5)
        readiness["truncated"] = (ready.status_code, ready.json())
        phase[0] = "deleted"
        for path in (keyindex.key_file(churn_snapshot), churn_snapshot):
            path.unlink()
        time.sleep(1.0)
        ready = httpx.get(f"{base_url}/readyz", timeout=5)
        readiness["deleted"] = (ready.status_code, ready.json())
        one = httpx.get(f"{base_url}/readyz/churn", timeout=5)
        readiness["churn"] = one.status_code
        phase[0] = "republished"
        churn = load_usecase("churn", state)
        publish_snapshot(state, churn, [(k, churn_score(i)) for i, k in enumerate(CUSTOMERS)], 2)
        time.sleep(0.5)
    finally:
        for reader in (churn_reader, forecast_reader):
            reader.stop.set()
        for thread in threads:
            thread.join(15)

    assert process.poll() is None, "prescore serve died"
    # The other use case answered every request, right, in every phase.
    assert forecast_reader.wrong == []
    assert {status for _, status in forecast_reader.seen} == {200}
    assert {p for p, _ in forecast_reader.seen} == {
        "healthy",
        "truncated",
        "deleted",
        "republished",
    }
    # The damaged one: 200 before, never a 500 or a dropped connection, 503 once damaged, and
    # 200 again from the new publish, without a restart.
    assert churn_reader.wrong == []
    statuses = {status for _, status in churn_reader.seen}
    assert statuses <= {200, 503}, churn_reader.seen
    assert churn_reader.seen[("healthy", 200)] > 0
    assert churn_reader.seen[("truncated", 503)] > 0
    assert churn_reader.seen[("deleted", 200)] == 0
    assert churn_reader.seen[("deleted", 503)] > 0
    assert churn_reader.seen[("republished", 200)] > 0
    for name in ("truncated", "deleted"):
        status, body = readiness[name]
        assert status == 200  # forecast can answer: the host stays in its load balancer
        assert body["status"] == "degraded"
        assert body["usecases"]["forecast"]["ready"] is True
        assert body["usecases"]["churn"]["ready"] is False
        assert churn_snapshot.name.removesuffix(".duckdb") in body["usecases"]["churn"]["reason"]
        assert str(state.state_dir) not in str(body)
    assert readiness["churn"] == 503
