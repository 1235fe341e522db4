"""Ingest: landing files, a Delta table or a JDBC source -> raw Delta table, kept unchanged, one
partition per run_date.

Grain out: one row per source row, the declared source columns plus run_date, _source_file,
_ingested_at and _bad_values. The source must hold the columns declared in the use case; a file
that does not is refused before anything is written, with the file and the column named. A text
value that does not parse as its declared type is refused the same way (`on_bad_value: fail`,
naming the row, the value and how many rows are bad), or kept in raw as null with its text in
_bad_values, for clean to quarantine the row (`on_bad_value: quarantine`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prescore.data.sources import (
    ROW_ORDER,
    SourceSchemaError,
    check_delta,
    check_landing_files,
    check_parsed,
    jdbc_name,
    landing_dir,
    landing_files,
    parse_text,
    read_jdbc,
    read_parquet,
    read_text,
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
    ignore = source.columns == "ignore_undeclared"
    version = check_delta(ctx.spark, str(path), source.schema_, ignore_undeclared=ignore)
    df = ctx.spark.read.format("delta").option("versionAsOf", version).load(str(path))
    return df.select(*source.schema_), f"{path}@v{version}"


def read_landing_files(ctx: RunContext, files: list[Path]) -> DataFrame:
    """The run date's landing files, checked before anything is written: Parquet as typed, text
    parsed to the declared types (refused on a bad value unless `on_bad_value: quarantine`)."""
    source = ctx.usecase.source
    headers = check_landing_files(files, source)
    if source.format == "parquet":
        return read_parquet(ctx.spark, files, source)
    text = read_text(ctx.spark, files, source, headers=headers)
    parsed = parse_text(text, declared=source.schema_, null_values=source.null_values)
    if source.on_bad_value == "fail":
        check_parsed(parsed, files, source, headers=headers, hidden=ctx.usecase.pii)
    return parsed.drop(ROW_ORDER)


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
        frame, origin, read = read_landing_files(ctx, files), None, {}
    raw = frame.transform(
        with_ingest_lineage, run_date=ctx.run_date, ingested_at=datetime.now(), source=origin
    )
    # Raw is never modified: a retyped column is refused; a new one (a raw table written before
    # _bad_values existed gains it) is merged in, older run dates reading it as null.
    version = tables.replace_run(
        raw, ctx.settings, ctx.usecase.raw_table, ctx.run_date, rewrite_older=False
    )
    rows = tables.written_rows(
        ctx.spark, ctx.settings, ctx.usecase.raw_table, ctx.run_date, version
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
