"""Slow Python imports done in a thread while a stage's main thread waits on Spark.

Importing Great Expectations, Evidently or MLflow takes seconds of Python, and a task pays them
in every process it starts; while a stage's Spark jobs run, its Python thread only waits on the
JVM. A stage names what it will import later and runs its Spark work inside the block: a few
long Spark calls, not many short ones, each of which would wait on its return for the import
thread to hand back the interpreter (bench/README.md, flow: where validate imports).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
# pyspark imports these on the first column expression it builds (to leave a notebook's frames out
# of the call site it records), and Great Expectations imports IPython too.
PYSPARK_LAZY_IMPORTS = ("IPython", "ipykernel")


@contextmanager
def imported_meanwhile(*modules: str) -> Iterator[None]:
    """Import `modules`, in order, in a thread while the block runs; wait for them on leaving it.

    The block must not import what the thread may: two threads importing the same modules at once
    can deadlock on Python's import locks. Spark calls on a session that is up import at most
    Delta's Python modules, which none of these libraries imports (they import pyspark's, already
    loaded), and PYSPARK_LAZY_IMPORTS, imported here first. A module that fails here is left for
    the stage's import to raise.
    """
    for name in PYSPARK_LAZY_IMPORTS:
        with contextlib.suppress(ImportError):  # pyspark goes without them too
            importlib.import_module(name)
    thread = threading.Thread(target=_import_all, args=(modules,), name="imported-meanwhile")
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the stage imports it again where it needs it, which raises there
            log.debug("imported_meanwhile: %s failed", name, exc_info=True)
            return
