"""A DuckDB file for BI tools: the sql/delta/ views over a use case's Delta tables (history, as-of,
publish log, champion vs challenger, monitoring), read live through DuckDB's delta extension.

The serving snapshot holds one published version and answers "what is served now"; this file
answers "what was served when" from the Delta tables themselves. It holds only view definitions
(absolute paths to the tables), so it is small, rebuilt in a second, and always reads the tables'
latest commits. A session opening it loads the delta extension first (`prescore bi-views` prints
the statement); nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from prescore.catalog import PUBLISH_LOG
from prescore.identifiers import quote_identifier, quote_literal
from prescore.platform import tables
from prescore.serving import snapshot

if TYPE_CHECKING:
    from prescore.config import Settings, UseCase

BI_SQL_DIR = "delta"  # sql/delta/: views over the Delta tables, kept out of the serving snapshots


def base_views(settings: Settings, usecase: UseCase) -> dict[str, str]:
    """The relations sql/delta/ reads, one select each, for the tables that exist so far."""
    sources = {
        "prediction_runs": (usecase.predictions_table, ""),
        "publish_events": (PUBLISH_LOG, f" where usecase = {quote_literal(usecase.name)}"),
        "shadow_runs": (usecase.shadow_table, ""),
        "monitoring_runs": (usecase.monitoring_table, ""),
    }
    return {
        name: f"select * from delta_scan({quote_literal(tables.delta_scan_path(settings, table))}){where}"
        for name, (table, where) in sources.items()
        if tables.exists(settings, table)
    }


def sql_preamble(settings: Settings, usecase: UseCase) -> str:
    """What a DuckDB session runs to query a use case's Delta tables by hand, offline: the delta
    extension loaded from its pip-installed file, then one view per table written so far, named
    as the table, and `publish_events`, the use case's rows of the shared publish log."""
    views = {
        table: f"select * from delta_scan({quote_literal(tables.delta_scan_path(settings, table))})"
        for table in usecase.tables
        if tables.exists(settings, table)
    }
    events = base_views(settings, usecase).get("publish_events")
    if events:
        views["publish_events"] = events
    creates = [f"create or replace view {quote_identifier(n)} as {s};" for n, s in views.items()]
    return "\n".join([load_statement(settings), *creates])


def build_bi_views(settings: Settings, usecase: UseCase, target: Path) -> dict[str, list[str]]:
    """Write `target` with the base views and every sql/delta/ view they allow; returns the views
    created and those skipped because a table they read is not written yet (no shadow table
    before a challenger is scored, no publish_log before a first publish)."""
    views = snapshot.load_views(settings.sql_dir / BI_SQL_DIR)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    created: list[str] = []
    with duckdb.connect(str(partial)) as con:
        tables.prepare_duckdb(con, settings)
        for name, select in base_views(settings, usecase).items():
            con.execute(f"create view {quote_identifier(name)} as {select}")
        pending = dict(views)
        while pending:  # views may read other views: create each once what it reads exists
            ready = [n for n, sql in pending.items() if _try_create(con, n, sql)]
            if not ready:
                break
            created += ready
            for name in ready:
                del pending[name]
    os.replace(partial, target)
    return {"created": created, "skipped": sorted(pending)}


def _try_create(con: duckdb.DuckDBPyConnection, name: str, select: str) -> bool:
    try:
        con.execute(f"create view {quote_identifier(name)} as {select}")
    except duckdb.CatalogException:  # a table or view it reads does not exist (yet)
        return False
    return True


def load_statement(settings: Settings) -> str:
    """What a DuckDB session runs before querying the file's views. With the state on an object
    store it also needs an S3 secret (CREATE SECRET): prescore writes no credentials anywhere."""
    return " ".join(f"load '{extension}';" for extension in tables.duckdb_extensions(settings))
