"""Files the stages write whole: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path


def write_text_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a partial file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
