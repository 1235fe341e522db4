"""Ingest: landing files, a Delta table or a JDBC source -> raw Delta table, kept unchanged, one
partition per run_date.

Grain out: one row per source row, the declared source columns plus run_date, _source_file and
_ingested_at. The source must match the schema declared in the use case; a file that does not is
refused before anything is written, with the file and the column named.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prescore.data.sources import (
    SourceSchemaError,
    check_delta,
    check_landing_files,
    jdbc_name,
    landing_dir,
    landing_files,
    read_jdbc,
    read_source,
    source_location,
    with_ingest_lineage,
)
from prescore.platform import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.context import RunContext

__all__ = ["SourceSchemaError", "run"]

log = logging.getLogger(__name__)


def read_delta_source(ctx: RunContext) -> tuple[DataFrame, str]:
    """An existing Delta table as the source: checked, read at one version, named with it."""
    source = ctx.usecase.source
    path = source_location(ctx.settings, source)
    version = check_delta(ctx.spark, str(path), source.schema_)
    df = ctx.spark.read.format("delta").option("versionAsOf", version).load(str(path))
    return df.select(*source.schema_), f"{path}@v{version}"


def run(ctx: RunContext) -> dict[str, object]:
    source = ctx.usecase.source
    if source.format == "delta":
        frame, origin = read_delta_source(ctx)
        files: list[Path] = []
        read: dict[str, object] = {origin.rsplit("@v", 1)[0]: int(origin.rsplit("@v", 1)[1])}
    elif source.format == "jdbc":  # checked as it is read, before anything is written
        frame, origin, files, read = read_jdbc(ctx.spark, source), jdbc_name(source), [], {}
    else:
        files = landing_files(landing_dir(ctx.settings, source, ctx.run_date), source)
        check_landing_files(ctx.spark, files, source)  # before anything is written
        frame, origin, read = read_source(ctx.spark, files, source), None, {}
    raw = frame.transform(
        with_ingest_lineage, run_date=ctx.run_date, ingested_at=datetime.now(), source=origin
    )
    version = tables.replace_run(  # raw is never modified: a retyped column is refused
        raw, ctx.settings, ctx.usecase.raw_table, ctx.run_date, rewrite_older=False
    )
    rows = (
        tables.read(ctx.spark, ctx.settings, ctx.usecase.raw_table, version)
        .where(f"{tables.RUN_DATE} = DATE'{ctx.run_date}'")
        .count()
    )
    log.info(
        "ingest: %d rows from %s -> %s v%d",
        rows,
        origin or f"{len(files)} file(s)",
        ctx.usecase.raw_table,
        version,
    )
    return {
        "rows": rows,
        "files": len(files),
        "raw_version": version,
        "read": read,
        "wrote": {ctx.usecase.raw_table: version},
    }
