"""`prescore reset`: remove one use case's derived state, and nothing of any other use case.

What goes: the Delta tables of its entity (raw unless kept, clean, quarantine, validation,
profile, cleaning statistics), its own tables (predictions, shadow, monitoring), its rows of the
shared publish_log, its serving folder (snapshots and the current pointer) and its reports.
What stays: the landing files (the source), and MLflow (runs, registered model, @champion and
@challenger): a registry is history and a deployment's, so it is left to MLflow's own tools.

A reset holds the use case's publish lock, so it never races a publish or a rollback, and a
publish never starts on a half-removed use case.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prescore import storage
from prescore.catalog import model_name
from prescore.platform import tables
from prescore.serving import publish_log
from prescore.serving.snapshot import LOCK, publish_lock, usecase_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from prescore.config import Settings, UseCase
    from prescore.storage import StatePath


def derived_tables(usecase: UseCase, *, keep_raw: bool) -> list[str]:
    """The Delta tables a reset removes: every table of the use case, raw unless kept."""
    return [t for t in usecase.tables if not (keep_raw and t == usecase.raw_table)]


def reset_usecase(
    settings: Settings,
    usecase: UseCase,
    *,
    keep_raw: bool,
    spark: Callable[[], SparkSession],
) -> dict[str, object]:
    """Remove the use case's derived state (see the module) under its publish lock; returns what
    was removed. `spark` is called only when publish_log holds rows of the use case to delete."""
    with publish_lock(settings, usecase, "reset"):
        removed = [
            t for t in derived_tables(usecase, keep_raw=keep_raw) if tables.remove(settings, t)
        ]
        log_rows = _delete_publish_log_rows(settings, usecase, spark)
        serving = _empty_serving_folder(usecase_dir(settings, usecase))
        if settings.state_on_object_store:  # and the store's snapshots and pointer
            on_store = _remove_folder(settings.serving_dir / usecase.name)
            serving += [on_store] if on_store else []
        reports = _remove_folder(settings.reports_dir / usecase.name)
    registered = model_name(settings.mlflow.registry_prefix, usecase.name)
    return {
        "usecase": usecase.name,
        "removed_tables": removed,
        "publish_log_rows_deleted": log_rows,
        "removed_serving_files": serving,
        "removed_reports": reports,
        "kept": {
            "raw": usecase.raw_table if keep_raw else None,
            "landing": str(settings.landing_dir),
            "mlflow": f"registered model {registered!r}, its versions, aliases and runs: left "
            "alone (MLflow's own tools remove them)",
        },
    }


def _delete_publish_log_rows(
    settings: Settings, usecase: UseCase, spark: Callable[[], SparkSession]
) -> int:
    """Delete the use case's rows of the shared publish_log (read first without a JVM: most
    resets of a use case never published have none)."""
    events = publish_log.read_with_duckdb(settings, usecase)
    if events:
        publish_log.delete_usecase_rows(spark(), settings, usecase)
    return len(events)


def _empty_serving_folder(folder: Path) -> list[str]:
    """Remove everything in serving/<usecase>/ but the lock file, which the reset is holding."""
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.name == LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # read-only snapshot files go too: their folder is writable
        else:
            path.unlink()
        removed.append(str(path))
    return removed


def _remove_folder(folder: StatePath) -> str | None:
    return str(folder) if storage.remove_tree(folder) else None
