"""Key lookups over the published serving snapshot: `Scores("churn").get("C00000042")`.

The client opens the snapshot read-only with DuckDB's external access off, binds keys as
parameters, and follows the current.duckdb link: after a publish or a rollback the next lookup
answers from the new snapshot, without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from prescore import serving
from prescore.config import Settings, UseCase, load_settings, load_usecase

Freshness = Literal["fresh", "expired", "missing"]
KeyValue = str | int | Sequence[str | int]


class SnapshotNotFoundError(FileNotFoundError):
    """Nothing has been published for this use case yet."""


@dataclass(frozen=True)
class Score:
    key: tuple[Any, ...]
    score: float | None
    freshness: Freshness
    model_name: str | None = None
    model_version: str | None = None
    scored_at: datetime | None = None
    valid_until: datetime | None = None


class Scores:
    """Read-only lookups of one use case's published scores."""

    def __init__(
        self,
        usecase: str | UseCase,
        settings: Settings | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.settings = settings or load_settings()
        self.usecase = (
            usecase if isinstance(usecase, UseCase) else load_usecase(usecase, self.settings)
        )
        self._now = now
        self._link = serving.current_path(self.settings, self.usecase)
        self._target: str | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        where = " and ".join(f'"{k}" = ?' for k in self.usecase.keys)
        self._sql = (
            f"select score, model_name, model_version, scored_at, valid_until "
            f"from {serving.PREDICTIONS} where {where}"
        )

    @property
    def snapshot(self) -> Path:
        """The snapshot file lookups answer from right now."""
        self._connection()
        return self._link.parent / str(self._target)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        try:
            target = os.readlink(self._link)
        except FileNotFoundError as exc:
            raise SnapshotNotFoundError(
                f"no published snapshot for use case {self.usecase.name!r} at {self._link}: run publish first"
            ) from exc
        if target != self._target or self._con is None:
            fresh = duckdb.connect(
                str(self._link.parent / target),
                read_only=True,
                config={"enable_external_access": False},
            )
            if self._con is not None:
                self._con.close()
            self._con, self._target = fresh, target
        return self._con

    def _key_tuple(self, key: KeyValue) -> tuple[Any, ...]:
        values = (key,) if isinstance(key, str | int) else tuple(key)
        if len(values) != len(self.usecase.keys):
            raise ValueError(
                f"use case {self.usecase.name!r} has key {self.usecase.keys}, got {values!r}"
            )
        return values

    def get(self, key: KeyValue) -> Score:
        values = self._key_tuple(key)
        row = self._connection().cursor().execute(self._sql, list(values)).fetchone()
        if row is None:
            return Score(key=values, score=None, freshness="missing")
        score, name, version, scored_at, valid_until = row
        freshness: Freshness = "expired" if valid_until < self._now() else "fresh"
        return Score(values, score, freshness, name, version, scored_at, valid_until)

    def get_many(self, keys: Sequence[KeyValue]) -> list[Score]:
        return [self.get(key) for key in keys]

    def sample_keys(self, n: int) -> list[tuple[Any, ...]]:
        """The first n keys in key order: handy for demos and smoke checks."""
        columns = ", ".join(f'"{k}"' for k in self.usecase.keys)
        sql = f"select {columns} from {serving.PREDICTIONS} order by {columns} limit ?"
        return [tuple(r) for r in self._connection().cursor().execute(sql, [n]).fetchall()]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
