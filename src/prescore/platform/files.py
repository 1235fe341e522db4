"""Files the stages write whole: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from prescore.storage import StatePath, is_object_store

P = TypeVar("P", bound=StatePath)


def write_text_atomically(path: P, text: str) -> P:
    """Write `text` (UTF-8) to a partial file beside `path`, then rename it over `path`. On an
    object store one PUT is already whole: the object is written directly."""
    if is_object_store(path):
        path.write_text(text, encoding="utf-8")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def make_read_only(path: Path) -> None:
    """Drop every write bit and keep the umask's read bits: a published file is never changed in
    place, only replaced by another name."""
    path.chmod(path.stat().st_mode & ~0o222)
