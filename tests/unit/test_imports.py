"""Slow imports done in a thread while the caller works."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prescore.platform.imports import imported_meanwhile

pytestmark = pytest.mark.unit


def test_modules_import_beside_the_block_and_are_loaded_once_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow_one.py").write_text(
        "import threading\nIMPORTED_BY = threading.current_thread().name\n"
    )
    (tmp_path / "broken_one.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "after_broken.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("slow_one", "broken_one", "after_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    with imported_meanwhile("slow_one", "broken_one", "after_broken"):
        caller = threading.current_thread().name

    assert sys.modules["slow_one"].IMPORTED_BY not in ("", caller)  # another thread did it
    assert "broken_one" not in sys.modules  # left for the caller's own import to raise
    assert "after_broken" not in sys.modules  # the thread stops at the first failure
    with pytest.raises(ImportError, match="broken on purpose"):
        import broken_one  # noqa: F401


def test_an_error_in_the_block_propagates_after_the_imports_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow_two.py").write_text("import time\ntime.sleep(0.2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_two", raising=False)

    with pytest.raises(ValueError, match="in the block"), imported_meanwhile("slow_two"):
        raise ValueError("in the block")

    assert "slow_two" in sys.modules  # waited for, not abandoned mid-import
    assert not [t for t in threading.enumerate() if t.name == "imported-meanwhile"]


def test_what_pyspark_imports_lazily_is_loaded_before_the_thread_starts() -> None:
    """pyspark imports IPython and ipykernel on its first column expression, in the caller's
    thread, and Great Expectations imports IPython in the import thread: loaded first, they
    are never imported by both at once (which deadlocked on Python's import locks)."""
    check = (
        "import sys\n"
        "from prescore.platform.imports import PYSPARK_LAZY_IMPORTS, imported_meanwhile\n"
        "assert not [m for m in PYSPARK_LAZY_IMPORTS if m in sys.modules]\n"
        "with imported_meanwhile():\n"
        "    assert [m for m in PYSPARK_LAZY_IMPORTS if m in sys.modules] == ['IPython', 'ipykernel']\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
