"""The package's import contracts (pyproject.toml [tool.importlinter]): kept, and able to fail.

Each run is a `lint-imports` process over one copy of the package: import-linter finds the
package through Python's import path, so a copy with a deliberate violation needs a process of
its own (this one has already imported the real package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import prescore

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[2]
PYPROJECT = PROJECT / "pyproject.toml"


def lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts over the package under `source`."""
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
        "--config",
        str(PYPROJECT),
        "--no-cache",
    ]
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=source)


def copy_of_the_package(tmp_path: Path) -> Path:
    """A copy of src/prescore under tmp_path/src; returns the src folder."""
    source = tmp_path / "src"
    shutil.copytree(
        Path(prescore.__file__).parent,
        source / "prescore",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return source


def test_the_package_keeps_every_contract() -> None:
    checked = lint_imports(Path(prescore.__file__).parent.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "broken" in checked.stdout and " 0 broken" in checked.stdout


@pytest.mark.parametrize(
    ("module", "appended", "contract"),
    [
        ("data/cleaning.py", "from prescore.stages import clean", "Layers: "),
        ("stages/clean.py", "from prescore.stages import score", "No stage imports another stage"),
        ("monitoring/measures.py", "from prescore.context import RunContext", "Below the stages"),
        ("stages/ingest.py", "from prescore.demo import datagen", "Only the CLI imports the demo"),
        ("serving/keyindex.py", "from prescore.serving import client", "No import cycles"),
    ],
    ids=["domain-imports-a-stage", "stage-imports-a-stage", "context-below", "demo", "cycle"],
)
def test_a_deliberate_violation_breaks_its_contract(
    tmp_path: Path, module: str, appended: str, contract: str
) -> None:
    source = copy_of_the_package(tmp_path)
    path = source / "prescore" / module
    path.write_text(f"{path.read_text()}\n{appended}\n")
    checked = lint_imports(source)
    assert checked.returncode != 0
    broken = [line for line in checked.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), checked.stdout
