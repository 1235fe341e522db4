"""Ingest: landing files, a Delta table or a JDBC source -> raw Delta table, kept unchanged, one
partition per run_date.

Grain out: one row per source row, the declared source columns plus run_date, _source_file and
_ingested_at. The source must match the schema declared in the use case; a file that does not is
refused before anything is written, with the file and the column named.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from prescore.data.sources import (
    SPARK_TYPES,
    SourceSchemaError,
    check_columns,
    check_csv_header,
    check_delta,
    check_json_lines,
    check_values,
    jdbc_name,
    read_jdbc,
)
from prescore.demo.datagen import landing_dir
from prescore.identifiers import quote_spark_identifier
from prescore.platform import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import SourceSettings
    from prescore.context import RunContext

log = logging.getLogger(__name__)

# Parquet physical types each declared type accepts without losing information.
_ARROW_ACCEPTS = {
    "string": (pa.types.is_string, pa.types.is_large_string),
    "int": (pa.types.is_int8, pa.types.is_int16, pa.types.is_int32),
    "long": (pa.types.is_integer,),
    "double": (pa.types.is_floating, pa.types.is_integer),
    "boolean": (pa.types.is_boolean,),
    "date": (pa.types.is_date,),
    "timestamp": (pa.types.is_timestamp,),
}


def check_parquet_schema(path: Path, declared: dict[str, str]) -> None:
    """Refuse a Parquet file with a missing, extra or retyped column, or no rows (reads the
    footer only)."""
    try:
        footer = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceSchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
    if footer.metadata.num_rows == 0:  # an export that wrote its schema and nothing else
        raise SourceSchemaError(f"{path}: no rows (an empty export?)")
    actual = {field.name: field.type for field in footer.schema_arrow}
    check_columns(str(path), list(actual), declared)
    for column, kind in declared.items():
        if not any(accepts(actual[column]) for accepts in _ARROW_ACCEPTS[kind]):
            raise SourceSchemaError(
                f"{path}: column {column!r} is {actual[column]}, declared {kind}"
            )


def landing_files(folder: Path, source: SourceSettings) -> list[Path]:
    files = sorted(p for p in folder.glob(f"*.{source.format}") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no {source.format} files for this run_date in {folder}")
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        raise SourceSchemaError(f"{empty[0]}: empty file")
    return files


def read_source(spark: SparkSession, files: list[Path], source: SourceSettings) -> DataFrame:
    """Read the landing files with the declared schema; FAILFAST so a bad record stops the read."""
    ddl = ", ".join(
        f"{quote_spark_identifier(c)} {SPARK_TYPES[t]}" for c, t in source.schema_.items()
    )
    reader = spark.read.format(source.format).schema(ddl).options(**source.options)
    if source.format in ("csv", "json"):
        reader = reader.option("mode", "FAILFAST")
    if source.format == "csv":
        reader = reader.option("header", "true")
    return reader.load([str(p) for p in files])


def with_lineage(
    df: DataFrame, *, run_date: date, ingested_at: datetime, source: str | None = None
) -> DataFrame:
    """Add run_date, the source of each row (its file name, or `source`) and the ingest time."""
    from pyspark.sql import functions as F

    origin = F.lit(source) if source is not None else F.col("_metadata.file_name")
    return (
        df.withColumn(tables.RUN_DATE, F.lit(run_date))
        .withColumn("_source_file", origin)
        .withColumn("_ingested_at", F.lit(ingested_at))
    )


def check_landing_files(spark: SparkSession, files: list[Path], source: SourceSettings) -> None:
    """Every file matches the declared schema (columns, then values for text formats)."""
    declared = source.schema_
    for path in files:
        if source.format == "parquet":
            check_parquet_schema(path, declared)
        elif source.format == "csv":
            check_csv_header(path, declared, delimiter=source.options.get("sep", ","))
        else:
            check_json_lines(path, declared)
    if source.format in ("csv", "json"):
        check_values(spark, files, source.format, declared, source.options)


def read_delta_source(ctx: RunContext) -> tuple[DataFrame, str]:
    """An existing Delta table as the source: checked, read at one version, named with it."""
    source = ctx.usecase.source
    path = Path(source.path)
    path = path if path.is_absolute() else ctx.settings.landing_dir / path
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
        files = landing_files(landing_dir(ctx.settings, ctx.usecase, ctx.run_date), source)
        check_landing_files(ctx.spark, files, source)  # before anything is written
        frame, origin, read = read_source(ctx.spark, files, source), None, {}
    raw = frame.transform(
        with_lineage, run_date=ctx.run_date, ingested_at=datetime.now(), source=origin
    )
    version = tables.replace_run(raw, ctx.settings, ctx.usecase.raw_table, ctx.run_date)
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
