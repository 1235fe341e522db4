"""Snapshots on an object store: what publish pushes and what serving hosts pull.

With the state on an object store, every host builds and reads snapshots in a local copy of the
serving folder (`Settings.local_serving_dir`, the layout of serving/snapshot.py), and the store
holds the truth:

    serving/<usecase>/snapshots/<name>.duckdb              uploaded once, never modified
    serving/<usecase>/snapshots/<name>.keys.arrow          its key file
    serving/<usecase>/snapshots/<name>.sha256.json         both files' SHA-256, uploaded after them
    serving/<usecase>/current.json                         the pointer: written last

An object is written whole or not at all, and a snapshot's objects are all up before the pointer
names it, so a reader never follows the pointer to a missing or partial snapshot. A host pulls a
snapshot into its copy under temporary names, checks both checksums, and only then renames them
and moves its local link: a damaged download is refused and the snapshot it had stays served.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore import storage
from prescore.platform.files import make_read_only
from prescore.serving import keyindex

if TYPE_CHECKING:
    from upath import UPath

    from prescore.config import Settings, UseCase

COPY_CHUNK = 8 << 20  # bytes per read of a download
POINTER = "current.json"
CHECKSUMS = ".sha256.json"


class SnapshotDownloadError(OSError):
    """A snapshot on the store could not be fetched whole and intact; nothing local changed."""


def store_dir(settings: Settings, usecase: UseCase) -> UPath:
    folder = settings.serving_dir / usecase.name
    assert not isinstance(folder, Path), "only for state on an object store"
    return folder


def snapshot_files(name: str) -> list[str]:
    """A snapshot's two files, the key file first (a snapshot never exists without it)."""
    return [keyindex.key_file(Path(name)).name, name]


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def push_snapshot(settings: Settings, usecase: UseCase, built: Path) -> dict[str, str]:
    """Upload a built snapshot's files, then their checksums; returns the checksums."""
    folder = store_dir(settings, usecase) / "snapshots"
    checksums = {}
    for name in snapshot_files(built.name):
        local = built.with_name(name)
        checksums[name] = sha256(local)
        storage.upload(local, folder / name)
    (folder / f"{built.name}{CHECKSUMS}").write_text(json.dumps(checksums))
    return checksums


def stored_checksums(settings: Settings, usecase: UseCase, name: str) -> dict[str, str] | None:
    """The checksums of a snapshot on the store, or None when it is not (or no longer) there."""
    path = store_dir(settings, usecase) / "snapshots" / f"{name}{CHECKSUMS}"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def write_pointer(settings: Settings, usecase: UseCase, name: str, *, run_date: str) -> None:
    """Point the store's readers at snapshot `name`, which must be on the store already."""
    checksums = stored_checksums(settings, usecase, name)
    if checksums is None:
        raise SnapshotDownloadError(f"{store_dir(settings, usecase)}: no snapshot {name} to serve")
    pointer = {
        "snapshot": name,
        "run_date": run_date,
        "checksums": checksums,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (store_dir(settings, usecase) / POINTER).write_text(json.dumps(pointer, indent=1))


def read_pointer(settings: Settings, usecase: UseCase) -> dict[str, Any] | None:
    """The store's pointer, or None before the first publish."""
    try:
        return dict(json.loads((store_dir(settings, usecase) / POINTER).read_text()))
    except FileNotFoundError:
        return None


def prune(settings: Settings, usecase: UseCase, keep: set[str]) -> list[str]:
    """Delete every snapshot on the store whose name is not in `keep`: its checksums first, so a
    snapshot half deleted is never taken for a whole one."""
    folder = store_dir(settings, usecase) / "snapshots"
    names = {p.name.removesuffix(CHECKSUMS) for p in folder.glob(f"*{CHECKSUMS}")}
    doomed = sorted(names - keep)
    for name in doomed:
        for file in [f"{name}{CHECKSUMS}", *snapshot_files(name)]:
            if (folder / file).exists():
                (folder / file).unlink()
    return doomed


def fetch(settings: Settings, usecase: UseCase, name: str, checksums: dict[str, str]) -> Path:
    """This host's copy of snapshot `name`, downloaded and checked first if it has none: each file
    lands under a temporary name and is renamed only once both checksums match."""
    local = settings.local_serving_dir / usecase.name / "snapshots" / name
    if all(local.with_name(file).is_file() for file in snapshot_files(name)):
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    remote = store_dir(settings, usecase) / "snapshots"
    unique = f"{os.getpid()}-{secrets.token_hex(4)}"
    partials = {file: local.with_name(f".{file}.{unique}.partial") for file in snapshot_files(name)}
    try:
        for file, partial in partials.items():
            with (remote / file).open("rb") as source, partial.open("wb") as target:
                shutil.copyfileobj(source, target, COPY_CHUNK)
            if sha256(partial) != checksums.get(file):
                raise SnapshotDownloadError(
                    f"{remote / file}: its SHA-256 does not match the pointer's; not served"
                )
        for file, partial in partials.items():  # the key file first, as a build does
            make_read_only(partial)
            os.replace(partial, local.with_name(file))
    except (OSError, ValueError) as exc:
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        if isinstance(exc, SnapshotDownloadError):
            raise
        raise SnapshotDownloadError(f"{remote / name}: could not download: {exc}") from exc
    return local
