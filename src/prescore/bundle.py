"""The prescore package as one zip for `spark-submit --py-files`: how the library reaches a cluster.

Executors import prescore when they run a stage's Python code (score's mapInArrow function is
pickled by reference). On a cluster they may not have it installed, so every stage job ships the
package it was launched from: the DAG builds the zip when a task starts, so it never lags the
code. Spark puts --py-files ahead of site-packages on the executors' path.

    python -m prescore.bundle dist/      # writes dist/prescore.zip, for spark-submit by hand
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import prescore

BUNDLE_NAME = "prescore.zip"


def build_bundle(folder: Path) -> Path:
    """Write <folder>/prescore.zip with every file of the prescore package (no bytecode)."""
    package = Path(prescore.__file__).resolve().parent
    target = folder / BUNDLE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                bundle.write(path, path.relative_to(package.parent).as_posix())
    return target


if __name__ == "__main__":
    print(build_bundle(Path(sys.argv[1] if len(sys.argv) > 1 else "dist")))
