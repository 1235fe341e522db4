"""Reader threads for the reliability tests: the client, the HTTP app and SQL on current.duckdb,
each answer checked to come wholly from one model version."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from prescore.serving.client import Scores

KEYS = [f"C{i:06d}" for i in range(400)]


def score_of(version: int, i: int) -> float:
    """Version 1 scores i/1000, version 2 half a thousandth more: every answer tells its version,
    and the two distributions are the same to publish's drift check."""
    return i / 1000 + (version - 1) * 0.0005


class Readers:
    """Reader threads looping until stopped; each answer is checked to be wholly one version."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.seen: dict[str, set[str]] = {}
        self.reads: Counter[str] = Counter()  # answers checked, per reader
        self.threads: list[threading.Thread] = []

    def add(self, name: str, read: Callable[[], str]) -> None:
        """`read` answers once and returns the version it answered from, or raises."""
        self.seen[name] = set()

        def loop() -> None:
            while not self.stop.is_set():
                try:
                    self.seen[name].add(read())
                    self.reads[name] += 1
                except Exception as exc:  # any error at all is a failure, with what it was
                    self.failures.append(f"{name}: {exc!r}"[:500])
                    return

        self.threads.append(threading.Thread(target=loop, name=name, daemon=True))

    @contextlib.contextmanager
    def looping(self) -> Iterator[None]:
        for thread in self.threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in self.threads:
                thread.join(30)


def whole_version(answers: list[tuple[str, str, float | None]]) -> str:
    """The one version all (version, key, score) answers come from; AssertionError on a mix."""
    versions = {version for version, _, _ in answers}
    assert len(versions) == 1, f"answers mix versions {sorted(versions)}"
    version = versions.pop()
    for _, key, score in answers:
        assert score == pytest.approx(score_of(int(version), KEYS.index(key))), (version, key)
    return version


def client_reader(client: Scores) -> Callable[[], str]:
    def read() -> str:
        batch = client.get_many(KEYS)
        return whole_version([(str(s.model_version), s.key[0], s.score) for s in batch])

    return read


def http_reader(http: httpx.Client) -> Callable[[], str]:
    def read() -> str:
        response = http.post("/v1/churn/scores:batch", json={"keys": KEYS[::7]})
        assert response.status_code == 200, response.text[:300]
        answers = response.json()["scores"]
        return whole_version(
            [(a["model_version"], a["key"]["customer_id"], a["score"]) for a in answers]
        )

    return read


def sql_reader(current: Path) -> Callable[[], str]:
    def read() -> str:
        # A BI tool opens current.duckdb afresh per session: the link resolves to one snapshot.
        with duckdb.connect(str(current), read_only=True) as con:
            rows = con.execute("select model_version, customer_id, score from scores").fetchall()
        assert len(rows) == len(KEYS)
        return whole_version(rows)

    return read
