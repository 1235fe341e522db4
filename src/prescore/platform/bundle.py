"""The prescore package as one zip for `spark-submit --py-files`: how the library reaches a cluster.

Executors import prescore when they run a stage's Python code (scoring's Arrow UDF is
pickled by reference). On a cluster they may not have it installed, so every stage job ships the
package it was launched from. Spark puts --py-files ahead of site-packages on the executors' path.

A task does not zip the package again: `cached_bundle` names the zip after a hash of the package's
files (their paths and bytes, not their times) and builds it only when no zip of that code is
cached yet, from the same bytes it hashed, so the zip is exactly the code the task runs. It is
written to a temporary name and renamed, so two tasks starting at once never read half a zip.

    python -m prescore.platform.bundle dist/      # writes dist/prescore.zip, for spark-submit by hand
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import prescore

BUNDLE_NAME = "prescore.zip"
CACHE_VARIABLE = "PRESCORE_CACHE_DIR"
# A cached zip of another code version is deleted once unused this long (a task may still run it).
STALE_SECONDS = 7 * 24 * 3600


def package_files(package: Path | None = None) -> dict[str, bytes]:
    """Every file of the package (prescore's by default; no bytecode), by its path in the zip."""
    package = package or Path(prescore.__file__).resolve().parent
    return {
        path.relative_to(package.parent).as_posix(): path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def code_version(files: dict[str, bytes]) -> str:
    """A hash of the files' paths and contents: the name of their zip."""
    digest = hashlib.sha256()
    for name, content in sorted(files.items()):
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:24]


def _write_zip(target: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in files.items():
            bundle.writestr(name, content)


def build_bundle(folder: Path) -> Path:
    """Write <folder>/prescore.zip with every file of the prescore package (no bytecode)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / BUNDLE_NAME
    _write_zip(target, package_files())
    return target


def bundle_cache_dir() -> Path:
    """Where cached zips live: $PRESCORE_CACHE_DIR/bundles, else ~/.cache/prescore/bundles."""
    root = os.environ.get(CACHE_VARIABLE) or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "prescore"
    )
    return Path(root) / "bundles"


def cached_bundle(folder: Path | None = None, package: Path | None = None) -> Path:
    """<folder>/prescore-<code version>.zip of the package as it is now, built only if missing."""
    folder = folder or bundle_cache_dir()
    files = package_files(package)
    target = folder / f"prescore-{code_version(files)}.zip"
    if target.is_file():
        os.utime(target)  # in use: not stale
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".prescore-", suffix=".zip")
    os.close(handle)
    try:
        _write_zip(Path(temporary), files)
        os.replace(temporary, target)  # atomic: readers see no zip or the whole zip
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _remove_stale(folder, keep=target)
    return target


def _remove_stale(folder: Path, keep: Path) -> None:
    """Delete the zips of other code versions not used for STALE_SECONDS."""
    cutoff = time.time() - STALE_SECONDS
    for path in folder.glob("prescore-*.zip"):
        try:
            if path != keep and path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass  # another task removed it first


if __name__ == "__main__":
    print(build_bundle(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")))
