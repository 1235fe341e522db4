"""Serving snapshots: a DuckDB file per publish with the sql/ views, plus its key file, swapped atomically.

Layout under <state_dir>/serving/<usecase>/:
    snapshots/<run_date>-v<predictions version>.duckdb       one file per publish, never modified
    snapshots/<run_date>-v<predictions version>.keys.arrow   its key file, for lookups (keyindex.py)
    current.duckdb -> snapshots/...                           symlink, replaced by rename

A reader opens current.duckdb (BI, SQL) or its key file (lookups) and gets one whole snapshot; a
publish writes new files beside the old ones, and only then moves the link, so nobody ever opens a
half-written file. Published files are read-only (no write bit), and one publish or rollback of a use case
runs at a time (`publish_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from prescore import storage
from prescore.catalog import REASONS
from prescore.identifiers import quote_identifier, quote_literal
from prescore.platform.files import make_read_only
from prescore.serving import keyindex, store

if TYPE_CHECKING:
    from prescore.config import Settings, UseCase

PREDICTIONS = "predictions"
CURRENT = "current.duckdb"
LOCK = "publish.lock"


class SnapshotWriteError(OSError):
    """A snapshot or the pointer could not be written (disk full, permission denied, ...).
    Nothing was published: readers keep the snapshot they had."""


class PublishLockedError(RuntimeError):
    """Another publish or rollback of the use case holds its lock; nothing was done."""


def usecase_dir(settings: Settings, usecase: UseCase) -> Path:
    """The use case's serving folder on this host (with the state on an object store, this host's
    copy of it: serving/store.py)."""
    return settings.local_serving_dir / usecase.name


def current_path(settings: Settings, usecase: UseCase) -> Path:
    return usecase_dir(settings, usecase) / CURRENT


def snapshot_path(settings: Settings, usecase: UseCase, run_date: date, version: int) -> Path:
    return (
        usecase_dir(settings, usecase) / "snapshots" / f"{run_date.isoformat()}-v{version}.duckdb"
    )


def load_views(sql_dir: Path) -> dict[str, str]:
    """sql/<view>.sql holds one select; the file name is the view name."""
    return {path.stem: path.read_text() for path in sorted(sql_dir.glob("*.sql"))}


def build_snapshot(
    target: Path,
    *,
    parquet_files: list[str],
    run_date: date,
    keys: list[str],
    views: dict[str, str],
) -> int:
    """Write a DuckDB file holding the predictions (plus run_date) and the views, and its key file;
    returns the row count.

    The two files are written side by side from the same Parquet files: the key file in a thread
    while DuckDB builds its table (both release the GIL), which takes a third off the build.
    The DuckDB file is built under a temporary name and renamed once both are complete, so
    `target` exists only when complete, and a snapshot that exists always has its key file.
    """
    # Names no other build shares, even of the same snapshot: a second process never unlinks ours.
    unique = f"{os.getpid()}-{secrets.token_hex(4)}"
    partial = target.with_name(f"{target.stem}.{unique}.partial")
    partial_keys = target.with_name(f"{target.stem}.{unique}.partial{keyindex.SUFFIX}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        files = PredictionFiles.scan(parquet_files, keys)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="key-file") as pool:
            key_rows = pool.submit(_write_key_file, partial_keys, files, run_date)
            rows = _write_duckdb_file(partial, files, run_date, views)
            if key_rows.result() != rows:  # the same files read twice: they changed underneath
                raise SnapshotWriteError(f"{target}: the Parquet files changed while read")
        for done in (partial_keys, partial):
            make_read_only(done)
        os.replace(partial_keys, keyindex.key_file(target))
        os.replace(partial, target)
    except BaseException as exc:
        # Disk full, no rights, bad data: leave no half-written file behind to fill the disk (and
        # never touch the finished files: a snapshot of this name may be the one being served).
        for leftover in (
            partial,
            partial.with_name(f"{partial.name}.wal"),  # DuckDB's write-ahead log
            partial_keys,
            partial_keys.with_name(f".{partial_keys.name}.partial"),
        ):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError | duckdb.Error) and not isinstance(exc, SnapshotWriteError):
            raise SnapshotWriteError(
                f"{target}: could not write the serving snapshot: {exc}"
            ) from exc
        raise
    return rows


def build_usecase_snapshot(
    settings: Settings, usecase: UseCase, run_date: date, version: int, parquet_files: list[str]
) -> tuple[Path, int]:
    """build_snapshot for a use case's predictions version: at its place in the serving folder,
    with the sql/ views. Returns the snapshot and its row count; the pointer does not move."""
    snapshot = snapshot_path(settings, usecase, run_date, version)
    with storage.local_copies(parquet_files, into=snapshot.parent) as files:
        rows = build_snapshot(
            snapshot,
            parquet_files=files,
            run_date=run_date,
            keys=usecase.published_keys,
            views=load_views(settings.sql_dir),
        )
    if settings.state_on_object_store:
        store.push_snapshot(settings, usecase, snapshot)
    return snapshot, rows


@dataclass(frozen=True)
class PredictionFiles:
    """The Parquet files of one predictions version, as both snapshot files read them."""

    paths: list[str]
    keys: list[str]
    types: dict[str, str]  # DuckDB type of each column but run_date (the snapshot sets its own)
    constants: dict[str, str]  # non-key columns with one value in every row: that value as text

    @classmethod
    def scan(cls, paths: list[str], keys: list[str]) -> PredictionFiles:
        """Column types and constant columns, from the files' schema and statistics (no data)."""
        with duckdb.connect() as con:
            columns = con.execute("describe select * from read_parquet(?)", [paths]).fetchall()
            # Delta may also write the partition column into the data files; the run date
            # passed to the build is the one value it can have, so it replaces the file's copy.
            types = {name: kind for name, kind, *_ in columns if name != "run_date"}
            candidates = [c for c in types if c not in keys]
            return cls(paths, keys, types, _constant_columns(con, paths, candidates))

    def select(self, columns: list[str]) -> str:
        quoted = ", ".join(quote_identifier(c) for c in columns)
        return f"select {quoted} from read_parquet(?)"


def _constant_columns(
    con: duckdb.DuckDBPyConnection, paths: list[str], candidates: list[str]
) -> dict[str, str]:
    """The columns among `candidates` holding one value in every row, with that value as text.

    Read from the Parquet statistics (min = max and no nulls in every row group), so it costs no
    scan. A column without statistics counts as varying, and so does a floating-point one (the
    statistics may leave NaN out).
    """
    same = con.execute(
        "select path_in_schema from parquet_metadata(?) group by path_in_schema "
        "having bool_and(coalesce(stats_null_count = 0 and stats_min_value = stats_max_value "
        "and type not in ('FLOAT', 'DOUBLE'), false)) and count(distinct stats_min_value) = 1",
        [paths],
    ).fetchall()
    names = [c for c in candidates if (c,) in same]
    if not names:
        return {}
    texts = ", ".join(f"cast({quote_identifier(c)} as varchar)" for c in names)
    first = con.execute(f"select {texts} from read_parquet(?) limit 1", [paths]).fetchone()
    return dict(zip(names, first or (), strict=True))


def _write_duckdb_file(
    path: Path, files: PredictionFiles, run_date: date, views: dict[str, str]
) -> int:
    types = files.types | {"run_date": "DATE"}
    constants = files.constants | {"run_date": run_date.isoformat()}
    stored = [c for c in types if c not in constants]
    with duckdb.connect(str(path)) as con:
        con.execute(_create_table(types, constants))
        # Stored in key order and not indexed: a `where <key> = ?` in SQL skips every row group
        # whose key range misses (zone maps), and an ART index would cost two thirds of the
        # build. Lookups by key go through the key file; publish has checked the keys are unique.
        key_list = ", ".join(quote_identifier(k) for k in files.keys)
        into = ", ".join(quote_identifier(c) for c in stored)
        con.execute(
            f"insert into {PREDICTIONS} ({into}) {files.select(stored)} order by {key_list}",
            [files.paths],
        )
        for name, select in views.items():
            con.execute(f"create view {quote_identifier(name)} as {select}")
        rows = con.execute(f"select count(*) from {PREDICTIONS}").fetchone()[0]  # type: ignore[index]
        con.execute("checkpoint")
    return int(rows)


def _create_table(types: dict[str, str], constants: dict[str, str]) -> str:
    """The predictions table, with each constant column as a virtual column holding its value.

    A scoring run stamps one model, one version, one time on every row: stored and sorted as
    columns, they cost more than the copy itself (bench/README.md, publish). A virtual column
    costs nothing to write,
    reads back as an ordinary column of the table, and keeps the column order of the files.
    """
    columns = []
    for name, kind in types.items():
        column = f"{quote_identifier(name)} {kind}"  # kind: a type DuckDB itself described
        if name in constants:
            value = quote_literal(constants[name])
            columns.append(f"{column} generated always as (cast({value} as {kind}))")
        else:
            columns.append(column)
    return f"create table {PREDICTIONS} ({', '.join(columns)})"


def _write_key_file(path: Path, files: PredictionFiles, run_date: date) -> int:
    """A key file at `path`, read from the Parquet by DuckDB as the snapshot's table is (so
    both see the same types); returns its row count. Constant columns are not read."""
    optional = [REASONS] if REASONS in files.types else []
    wanted = [*files.keys, *keyindex.VALUE_COLUMNS, *optional]
    wanted = [c for c in wanted if c not in files.constants]
    with duckdb.connect(config={"threads": 1}) as con:
        predictions = con.execute(files.select(wanted), [files.paths]).to_arrow_table()
    keyindex.write_key_file(
        path, predictions, keys=files.keys, run_date=run_date, constants=files.constants
    )
    return predictions.num_rows


def stage_pointer(settings: Settings, usecase: UseCase, snapshot_name: str) -> Path:
    """Write the link that will replace current.duckdb, beside it; readers see nothing yet.

    Everything that can fail for lack of space or rights happens here, before anything is logged:
    the move that follows is a rename within the folder. The link is relative
    (`snapshots/<name>`), so the state folder can be moved or copied whole."""
    link = current_path(settings, usecase)
    staged = link.with_name(f".{CURRENT}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        staged.symlink_to(f"snapshots/{snapshot_name}")
    except OSError as exc:
        raise SnapshotWriteError(
            f"{link}: could not stage the move to {snapshot_name}: {exc}"
        ) from exc
    return staged


def move_pointer(staged: Path) -> None:
    """Make a staged link current.duckdb, in one rename."""
    os.replace(staged, staged.with_name(CURRENT))


def snapshot_problem(snapshot: Path) -> str | None:
    """Why a kept snapshot cannot be served (its DuckDB file or key file is damaged), or None:
    checked before a rollback points readers at it."""
    try:
        keyindex.KeyIndex(keyindex.key_file(snapshot)).close()
        with duckdb.connect(str(snapshot), read_only=True) as con:
            con.execute(f"select count(*) from {PREDICTIONS}").fetchone()
    except (OSError, ValueError, duckdb.Error) as exc:  # pyarrow's ArrowInvalid is a ValueError
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def pointer_target(settings: Settings, usecase: UseCase) -> str | None:
    """Where current.duckdb points (`snapshots/<name>.duckdb`), or None before the first publish;
    with the state on an object store, where the store's pointer points."""
    if settings.state_on_object_store:
        pointer = store.read_pointer(settings, usecase)
        return f"snapshots/{pointer['snapshot']}" if pointer else None
    try:
        return os.readlink(current_path(settings, usecase))
    except FileNotFoundError:
        return None


def prune_snapshots(settings: Settings, usecase: UseCase, keep: set[str]) -> list[Path]:
    """Delete every snapshot, with its key file, whose file name is not in `keep`. The snapshot
    goes first: a key file without a snapshot is never served."""
    doomed = _prune_copies(usecase_dir(settings, usecase) / "snapshots", keep)
    if settings.state_on_object_store:
        store.prune(settings, usecase, keep)
    return doomed


def _prune_copies(folder: Path, keep: set[str]) -> list[Path]:
    doomed = [p for p in sorted(folder.glob("*.duckdb")) if p.name not in keep]
    for path in doomed:
        path.unlink(missing_ok=True)
        keyindex.key_file(path).unlink(missing_ok=True)
    return doomed


def kept_snapshot(settings: Settings, usecase: UseCase, name: str) -> Path | None:
    """A kept snapshot's DuckDB file on this host, or None when it is no longer kept. With the
    state on an object store, it is downloaded and checked first if this host has no copy."""
    if settings.state_on_object_store:
        checksums = store.stored_checksums(settings, usecase, name)
        return None if checksums is None else store.fetch(settings, usecase, name, checksums)
    path = usecase_dir(settings, usecase) / "snapshots" / name
    return path if path.exists() else None


def follow_store(settings: Settings, usecase: UseCase) -> str | None:
    """Make this host serve what the store's pointer names: download and check the snapshot if
    it has no copy, then move the local link. Returns the snapshot moved to, or None when the
    link already pointed there (or nothing is published)."""
    pointer = store.read_pointer(settings, usecase)
    if pointer is None:
        return None
    name = pointer["snapshot"]
    link = current_path(settings, usecase)
    with contextlib.suppress(FileNotFoundError):
        if os.readlink(link) == f"snapshots/{name}":
            return None
    fetched = store.fetch(settings, usecase, name, pointer["checksums"])
    move_pointer(stage_pointer(settings, usecase, name))
    # This host keeps the served copy and the newest others, serving_snapshots_kept in all (the
    # store keeps what rollbacks need).
    others = [p for p in fetched.parent.glob("*.duckdb") if p.name != name]
    newest = sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    kept = settings.serving_snapshots_kept - 1
    _prune_copies(fetched.parent, {name, *(p.name for p in newest[:kept])})
    return str(name)


@contextlib.contextmanager
def publish_lock(settings: Settings, usecase: UseCase, what: str) -> Iterator[None]:
    """Hold the use case's publish lock while `what` (a publish or rollback) runs, or raise
    PublishLockedError naming the holder. An flock: it goes with its process, so a killed
    publish never leaves the use case locked."""
    folder = usecase_dir(settings, usecase)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise PublishLockedError(
                f"use case {usecase.name!r}: another publish or rollback is running ({holder}); "
                f"try again when it ends (lock {path})"
            ) from None
        lock.truncate(0)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        lock.write(f"{what} by pid {os.getpid()} on {socket.gethostname()} since {since}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)
