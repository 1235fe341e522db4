"""The zip that carries prescore to a cluster's executors (spark-submit --py-files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import prescore
from prescore.platform.bundle import STALE_SECONDS, build_bundle, cached_bundle

pytestmark = pytest.mark.unit


def test_bundle_holds_every_module_of_the_package_and_no_bytecode(tmp_path: Path) -> None:
    package = Path(prescore.__file__).parent
    modules = {
        p.relative_to(package.parent).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    names = set(zipfile.ZipFile(build_bundle(tmp_path)).namelist())
    assert "prescore/stages/score.py" in names
    assert modules <= names
    assert not [n for n in names if n.endswith(".pyc")]


def test_python_imports_prescore_from_the_bundle_alone(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path)
    # -S: no site-packages, so the installed (editable) prescore is out of reach.
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import prescore; print(prescore.__file__)"
    found = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == f"{bundle}/prescore/__init__.py"


def _copy_of_the_package(tmp_path: Path) -> Path:
    package = tmp_path / "src" / "prescore"
    shutil.copytree(
        Path(prescore.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    return package


def test_the_same_code_reuses_its_zip_and_a_changed_file_makes_a_new_one(tmp_path: Path) -> None:
    package, cache = _copy_of_the_package(tmp_path), tmp_path / "cache"
    first = cached_bundle(cache, package)
    built = first.stat().st_ino
    (package / "platform" / "spark.py").touch()  # a newer time, the same content: the same code
    assert cached_bundle(cache, package) == first
    assert first.stat().st_ino == built  # reused, not written again

    (package / "platform" / "spark.py").write_text(
        (package / "platform" / "spark.py").read_text() + "\n# changed\n"
    )
    second = cached_bundle(cache, package)
    assert second != first and first.is_file()
    assert zipfile.ZipFile(second).read("prescore/platform/spark.py").endswith(b"# changed\n")
    assert not zipfile.ZipFile(first).read("prescore/platform/spark.py").endswith(b"# changed\n")
    assert second.name.startswith("prescore-") and second.suffix == ".zip"


def test_a_zip_of_another_code_version_unused_for_a_week_is_removed(tmp_path: Path) -> None:
    package, cache = _copy_of_the_package(tmp_path), tmp_path / "cache"
    old = cached_bundle(cache, package)
    week_ago = time.time() - STALE_SECONDS - 60
    os.utime(old, (week_ago, week_ago))
    (package / "platform" / "jars.py").write_text("# another version\n")
    assert cached_bundle(cache, package) != old
    assert not old.exists()


def test_tasks_starting_at_once_all_get_the_whole_zip(tmp_path: Path) -> None:
    package, cache = _copy_of_the_package(tmp_path), tmp_path / "cache"
    starting = threading.Barrier(8)

    def start_task(_: int) -> Path:
        starting.wait()
        bundle = cached_bundle(cache, package)
        with zipfile.ZipFile(bundle) as whole:  # readable, every member intact
            assert whole.testzip() is None
            assert "prescore/stages/score.py" in whole.namelist()
        return bundle

    with ThreadPoolExecutor(max_workers=8) as pool:
        bundles = set(pool.map(start_task, range(8)))
    assert len(bundles) == 1
    assert [p.name for p in cache.iterdir()] == [bundles.pop().name]  # no temporary file left
