"""The zip that carries prescore to a cluster's executors (spark-submit --py-files)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import prescore
from prescore.bundle import build_bundle

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
