"""Key lookups over the published scores: `Scores("churn").get("C00000042")`.

The client answers from the key file of the snapshot current.duckdb points at (see keyindex.py):
read into memory, no query engine on the path. Each call reads the link (one readlink); when a
publish or a rollback moved it, the call opens the new snapshot's key file, so answers follow the
link without a restart, and each call answers wholly from one snapshot.

At most every `check_every` seconds (0.1), a call also stats the snapshot's two files (DuckDB and
key file) and compares device, inode, size and mtime with what was opened: two stats cost about
half a single-key lookup (measured), and until the check the answers still come whole from the
copy in memory. Published files never change, so a difference is damage (a copy over it, a
truncation, a delete): the file is read and checked again, and when that fails the calls raise
SnapshotDamagedError until the link moves or the file is whole again. Answering on from the copy
in memory would hide the damage from the operator while SQL readers of the same file fail, and a
restart would lose it; failing names the file and the cure (publish or rollback).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from time import monotonic
from typing import Any, Literal, NamedTuple, cast

import duckdb
import numpy as np

from prescore.config import Settings, UseCase, load_settings, load_usecase
from prescore.identifiers import quote_identifier
from prescore.serving import keyindex, publish_log, snapshot
from prescore.serving.compute import ChampionPackage, computed, refuse_time_series
from prescore.serving.keyindex import KeyIndex, KeyPart

log = logging.getLogger(__name__)
Freshness = Literal["fresh", "stale", "expired", "missing"]
Source = Literal["precomputed", "computed"]
KeyValue = str | int | Sequence[str | int]
Signature = tuple[int, int, int, int]  # a file's device, inode, size and mtime in ns
_NAMED_RUN_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})-v\d+\.")  # snapshot.snapshot_path's names


class SnapshotNotFoundError(FileNotFoundError):
    """Nothing has been published for this use case yet (or not with a key file)."""


class NothingPublishedError(SnapshotNotFoundError):
    """The use case has no current.duckdb: nothing was ever published."""


class SnapshotUnreadableError(RuntimeError):
    """The published snapshot's key file exists but cannot be read (corrupt, or another format)."""


class SnapshotDamagedError(SnapshotUnreadableError):
    """A file of the snapshot being served changed on disk after it was opened, and is no longer
    a whole snapshot (truncated, deleted, or replaced by something unreadable)."""


def file_signature(path: str) -> Signature | None:
    """(device, inode, size, mtime) of a file, or None when it cannot be stat'ed."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


class Served(NamedTuple):
    """The snapshot lookups answer from: where the link pointed, its key file in memory, and both
    files' signatures when they were opened."""

    target: str
    index: KeyIndex
    database: str
    key_file: str
    signatures: tuple[Signature | None, Signature]

    def intact(self) -> bool:
        """Whether both files are still the ones opened (two stats)."""
        return (file_signature(self.database), file_signature(self.key_file)) == self.signatures


class Reason(NamedTuple):
    """One feature behind a score: its contribution to the model's margin (log-odds for a binary
    label; with the bias, a row's contributions add up to the margin) and its value as the model
    saw it (after fills and clips; None when missing)."""

    feature: str
    contribution: float
    value: str | None


def _reasons(found: list[dict[str, Any]] | None) -> list[Reason] | None:
    return None if found is None else [Reason(**r) for r in found]


class Score(NamedTuple):
    """One key's answer. A named tuple, not a dataclass: a 1000-key batch builds 1000 of them, and
    a tuple is built in C (bench/README.md, lookup: what a frozen dataclass cost).

    `source`: "precomputed" (from the snapshot), "computed" (from features, on demand: no
    freshness, no scored_at), or None for a missing key. `reasons`: the top features behind
    the score, largest first, when the use case explains its scores (`score.explain`)."""

    key: tuple[Any, ...]
    score: float | None
    freshness: Freshness | None
    model_name: str | None = None
    model_version: str | None = None
    scored_at: datetime | None = None
    valid_until: datetime | None = None
    run_date: date | None = None
    source: Source | None = None
    reasons: list[Reason] | None = None


# Score(*row) without namedtuple's Python-level _make: a batch builds one Score per key.
_new_score = cast(Callable[[Iterable[Any]], Score], partial(tuple.__new__, Score))


def freshness(
    scored_at: datetime, valid_until: datetime, *, now: datetime, stale_after: timedelta
) -> Freshness:
    """Expired once now reaches valid_until; stale while valid but older than the cadence allows."""
    if now >= valid_until:
        return "expired"
    return "stale" if now - scored_at > stale_after else "fresh"


def freshness_of(
    scored_at: np.ndarray, valid_until: np.ndarray, *, now: datetime, stale_after: timedelta
) -> list[Freshness]:
    """freshness() of many rows at once, over their datetime64 columns."""
    instant = np.datetime64(now, "us")
    expired = instant >= valid_until
    stale = (instant - scored_at) > np.timedelta64(stale_after)
    return cast(
        list[Freshness], np.where(expired, "expired", np.where(stale, "stale", "fresh")).tolist()
    )


class Scores:
    """Read-only lookups of one use case's published scores; safe to share between threads."""

    def __init__(
        self,
        usecase: str | UseCase,
        settings: Settings | None = None,
        now: Callable[[], datetime] = datetime.now,
        check_every: float = 0.1,
        on_model_load: Callable[[], None] | None = None,
    ) -> None:
        """`check_every`: seconds between checks that the served files are the ones opened (0:
        at every call). `on_model_load`: called after a computed score loaded a model version (a
        server settles its heap: serving.compute.settle_heap)."""
        self.settings = settings or load_settings()
        self.usecase = (
            usecase if isinstance(usecase, UseCase) else load_usecase(usecase, self.settings)
        )
        self._now = now
        self._stale_after = timedelta(hours=self.usecase.score.stale_after_hours)
        self._link = snapshot.current_path(self.settings, self.usecase)
        self._opened: Served | None = None
        self._check_every = check_every
        self._next_check = 0.0  # monotonic time of the next check of the served files
        # Why the link target cannot be served, kept by (target, its files' signatures): a damaged
        # file is read once, not at every call, and again once it changes.
        self._broken: tuple[tuple[str, tuple[Signature | None, ...]], type[Exception], str] | None
        self._broken = None
        self._swap = threading.Lock()
        self._history: tuple[str, list[publish_log.Event]] | None = None  # (link target, log)
        self._past: dict[Path, KeyIndex] = {}  # key files of earlier snapshots, for as_of
        self._champion: ChampionPackage | None = None  # loaded at the first computed score
        self._on_model_load = on_model_load

    @property
    def snapshot(self) -> Path:
        """The snapshot file lookups answer from right now."""
        self._index()
        opened = self._opened
        assert opened is not None  # _index opened it
        return Path(opened.database)

    def check_served(self) -> str:
        """The file name of the snapshot served, once both its files are there, readable and the
        ones opened; else SnapshotNotFoundError or SnapshotUnreadableError saying why."""
        self._index(check=True)
        opened = self._opened
        assert opened is not None  # _index opened it
        for path in (opened.database, opened.key_file):
            if not os.access(path, os.R_OK):
                raise SnapshotUnreadableError(f"{path} is not readable")
        return Path(opened.database).name

    def _target(self) -> str:
        try:
            return os.readlink(self._link)
        except FileNotFoundError as exc:
            raise NothingPublishedError(
                f"no published snapshot for use case {self.usecase.name!r} at {self._link}: run publish first"
            ) from exc

    def _index(self, *, check: bool = False) -> KeyIndex:
        """The key file of the snapshot the link points at; opened again only when the link moved
        or one of the snapshot's files changed (checked when `check`, else every check_every)."""
        target = self._target()
        opened = self._opened  # one read: another thread may swap it meanwhile
        if opened is not None and opened.target == target:
            moment = monotonic()
            if moment < self._next_check and not check:
                return opened.index
            if opened.intact():
                self._next_check = moment + self._check_every
                return opened.index
        return self._reopen()

    def _reopen(self) -> KeyIndex:
        """Open the snapshot the link points at now, or raise why it cannot be served (the same
        reason, without reading the files again, until they or the link change)."""
        with self._swap:
            target = self._target()
            database = str(self._link.parent / target)
            key_file = str(keyindex.key_file(Path(database)))
            now = (file_signature(database), file_signature(key_file))
            opened = self._opened
            if opened is not None and opened.target == target and opened.signatures == now:
                self._next_check = monotonic() + self._check_every
                return opened.index
            if self._broken is not None and self._broken[0] == (target, now):
                raise self._broken[1](self._broken[2])
            same = opened is not None and opened.target == target
            try:
                fresh = self._open(target, database, key_file, whole_database=same)
            except (SnapshotNotFoundError, SnapshotUnreadableError) as exc:
                failure: Exception = exc
                if same:
                    # The files answered from until now changed: stop answering from them (kept
                    # only to recognise them, and dropped once the link moves).
                    failure = SnapshotDamagedError(
                        f"use case {self.usecase.name!r}: the served snapshot {Path(target).name} "
                        f"changed on disk after it was opened: {exc}; publish or roll back"
                    )
                    log.error("%s", failure)
                self._broken = ((target, now), type(failure), str(failure))
                self._next_check = float("-inf")  # no call answers from the held copy now
                if failure is exc:
                    raise
                raise failure from exc
            if same:
                log.warning("%s: the served snapshot's files were replaced; reopened", database)
            self._opened, self._broken = fresh, None
            self._next_check = monotonic() + self._check_every
            return fresh.index

    def _open(
        self, target: str, database: str, key_file: str, *, whole_database: bool = False
    ) -> Served:
        """The snapshot at `database` with its key file read and checked; with `whole_database`
        (a served file changed: only then, it costs a DuckDB open), the DuckDB file too."""
        signature = file_signature(database)
        if signature is None:
            raise SnapshotNotFoundError(
                f"use case {self.usecase.name!r}: current.duckdb points at {database}, which is missing"
            )
        index = open_key_file(Path(database))
        named = _NAMED_RUN_DATE.match(Path(target).name)
        if named and named[1] != index.run_date.isoformat():  # a key file copied over another
            raise SnapshotUnreadableError(
                f"{key_file} holds run date {index.run_date}, not the {named[1]} its name says"
            )
        if whole_database:
            _check_database(database, index.size)
        return Served(target, index, database, key_file, (signature, index.signature))

    def _canonical(self, keys: Sequence[object], index: KeyIndex) -> list[tuple[KeyPart, ...]]:
        try:
            return keyindex.canonical_keys(keys, index.kinds)
        except ValueError as exc:
            columns = ", ".join(f"{k} ({t})" for k, t in zip(index.keys, index.kinds, strict=True))
            raise ValueError(f"use case {self.usecase.name!r} has key {columns}: {exc}") from None

    def get(
        self,
        key: KeyValue,
        *,
        as_of: date | datetime | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> Score:
        """The score of one key; with `as_of`, as the snapshot current then answered it. With
        `features`, a key that was not precomputed is scored from them (`compute`)."""
        index, now = self._answering(as_of)
        (canonical,) = self._canonical([key], index)
        row = index.find_one(canonical)
        if row < 0 and features is not None:
            return self._computed([canonical], [features])[0]
        if row < 0:
            return Score(canonical, None, "missing")
        found = np.array([row])
        score, name, version, scored_at, valid_until = (c[0] for c in index.columns(found))
        status = freshness(scored_at, valid_until, now=now, stale_after=self._stale_after)
        reasons = index.reasons(found)
        return Score(
            canonical,
            score,
            status,
            name,
            version,
            scored_at,
            valid_until,
            index.run_date,
            "precomputed",
            None if reasons is None else _reasons(reasons[0]),
        )

    def get_many(
        self,
        keys: Sequence[KeyValue],
        *,
        as_of: date | datetime | None = None,
        features: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Score]:
        """Scores of many keys at once, in their order, all from the same snapshot. With
        `features` (one mapping per key, in the same order), the keys that were not precomputed
        are scored from theirs, in one call of the model."""
        if features is not None and len(features) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(features)} rows of features")
        index, now = self._answering(as_of)
        canonical = self._canonical(keys, index)
        scores = self._scores(index, canonical, index.find(index.needles(canonical)), now)
        if features is None:
            return scores
        missing = [i for i, score in enumerate(scores) if score.source is None]
        if missing:
            found = self._computed([canonical[i] for i in missing], [features[i] for i in missing])
            for i, score in zip(missing, found, strict=True):
                scores[i] = score
        return scores

    def compute(self, rows: Sequence[Mapping[str, Any]]) -> list[Score]:
        """Scores computed now by the @champion's model package from rows of feature values
        (None for a missing value), in their order; a row's key columns, if given, are its key.
        ComputeRefusedError names a PII, unknown or missing column, or a value of the wrong kind."""
        keys = [tuple(row.get(k) for k in self.usecase.keys) for row in rows]
        return self._computed([() if all(v is None for v in k) else k for k in keys], rows)

    def _computed(
        self, keys: Sequence[tuple[Any, ...]], rows: Sequence[Mapping[str, Any]]
    ) -> list[Score]:
        refuse_time_series(self.usecase)  # before loading a model it could not use
        if self._champion is None:
            refresh = self.settings.serve.model_refresh_seconds
            self._champion = ChampionPackage(
                self.settings, self.usecase, refresh, on_load=self._on_model_load
            )
        ref, package = self._champion.current()
        if not rows:
            return []
        values, reasons = computed(package, self.usecase, rows)
        return [
            Score(key, value, None, ref.name, ref.version, source="computed", reasons=why)
            for key, value, why in zip(
                keys, values, map(_reasons, reasons or [None] * len(rows)), strict=True
            )
        ]

    def _scores(
        self, index: KeyIndex, keys: list[tuple[KeyPart, ...]], rows: np.ndarray, now: datetime
    ) -> list[Score]:
        """One Score per key, column by column: its row's values where found (row >= 0),
        `missing` elsewhere."""
        if index.size == 0:
            return [Score(key, None, "missing") for key in keys]
        missing = np.flatnonzero(rows < 0).tolist()
        rows = np.where(rows < 0, 0, rows)  # any row: the missing keys' values are overwritten
        score, name, version, scored_at, valid_until = index.columns(rows)
        status = self._freshness(index, rows, now)
        run_date: list[date | None] = [index.run_date] * len(keys)
        source: list[Source | None] = ["precomputed"] * len(keys)
        found = index.reasons(rows)
        reasons = [None] * len(keys) if found is None else list(map(_reasons, found))
        for i in missing:
            score[i] = name[i] = version[i] = scored_at[i] = valid_until[i] = run_date[i] = None
            source[i] = reasons[i] = None
            status[i] = "missing"
        columns = zip(
            keys,
            score,
            status,
            name,
            version,
            scored_at,
            valid_until,
            run_date,
            source,
            reasons,
            strict=True,
        )
        return list(map(_new_score, columns))

    def _freshness(self, index: KeyIndex, rows: np.ndarray, now: datetime) -> list[Freshness]:
        """Freshness of the rows; judged once when the snapshot has one scored_at and valid_until."""
        if "scored_at" in index.constants and "valid_until" in index.constants:
            scored_at, valid_until = index.constants["scored_at"], index.constants["valid_until"]
            one = freshness(scored_at, valid_until, now=now, stale_after=self._stale_after)
            return [one] * len(rows)
        return freshness_of(
            index.times("scored_at", rows),
            index.times("valid_until", rows),
            now=now,
            stale_after=self._stale_after,
        )

    def _answering(self, as_of: date | datetime | None) -> tuple[KeyIndex, datetime]:
        """The key file to answer from and the time freshness is judged at."""
        if as_of is None:
            return self._index(), self._now()
        # A date means the end of that day: the last publish of the day counts.
        instant = as_of if isinstance(as_of, datetime) else datetime.combine(as_of, time.max)
        return self._index_at(instant), instant

    def _index_at(self, instant: datetime) -> KeyIndex:
        """The key file of the snapshot that was current at `instant`, per publish_log."""
        aware = instant.astimezone()  # naive means local time, as publish stamped published_at
        current = publish_log.current_at(self._publish_history(), aware)
        if current is None:
            raise SnapshotNotFoundError(
                f"use case {self.usecase.name!r}: nothing was published by {instant}"
            )
        snapshot = self._link.parent / "snapshots" / current.snapshot_name
        with self._swap:
            for held in list(self._past):
                # pruned by retention (its keys leave memory too), or a new file of that name
                if file_signature(str(keyindex.key_file(held))) != self._past[held].signature:
                    del self._past[held]
            if not snapshot.exists():
                raise SnapshotNotFoundError(
                    f"{current.snapshot_name}, current at {instant}, is no longer kept (the last "
                    f"{self.settings.serving_snapshots_kept} are): republish its run date to look "
                    "it up"
                )
            if snapshot not in self._past:
                self._past[snapshot] = open_key_file(snapshot)
            return self._past[snapshot]

    def _publish_history(self) -> list[publish_log.Event]:
        """The served publish_log events, oldest first; read again only after the link moved
        (every publish and rollback moves it, after logging)."""
        target = self._target()
        if self._history is None or self._history[0] != target:
            events = publish_log.read_with_duckdb(self.settings, self.usecase)
            self._history = (target, publish_log.served_events(events, target))
        return self._history[1]

    def sample_keys(self, n: int) -> list[tuple[Any, ...]]:
        """The first n keys in key order, read from the snapshot with DuckDB: for demos and smoke checks."""
        columns = ", ".join(quote_identifier(k) for k in self.usecase.published_keys)
        sql = f"select {columns} from {snapshot.PREDICTIONS} order by {columns} limit ?"
        built = str(self.snapshot)
        with duckdb.connect(built, read_only=True, config={"enable_external_access": False}) as con:
            return [tuple(row) for row in con.execute(sql, [n]).fetchall()]

    def close(self) -> None:
        with self._swap:
            if self._opened is not None:
                self._opened.index.close()
                self._opened = None
            for index in self._past.values():
                index.close()
            self._past.clear()


def _check_database(database: str, rows: int) -> None:
    """SnapshotUnreadableError unless the DuckDB file opens and holds `rows` predictions (DuckDB
    raises on a truncated file instead of reading past its end)."""
    sql = f"select count(*) from {snapshot.PREDICTIONS}"
    try:
        with duckdb.connect(
            database, read_only=True, config={"enable_external_access": False}
        ) as con:
            row = con.execute(sql).fetchone()
    except duckdb.Error as exc:
        raise SnapshotUnreadableError(f"cannot read {database}: {exc}") from exc
    if row is None or row[0] != rows:
        found = None if row is None else row[0]
        raise SnapshotUnreadableError(f"{database} holds {found} predictions, its key file {rows}")


def open_key_file(snapshot: Path) -> KeyIndex:
    path = keyindex.key_file(snapshot)
    if not path.exists():
        raise SnapshotNotFoundError(
            f"{snapshot} has no key file {path.name}: it was published before key files existed "
            "or has just been pruned; publish the run date again"
        )
    try:
        return KeyIndex(path)
    except Exception as exc:  # whatever a damaged file makes the reader raise (ArrowInvalid, ...)
        # Not a ValueError: to a caller, that means a bad key.
        raise SnapshotUnreadableError(f"cannot read the key file {path}: {exc}") from exc
