"""Source checks before ingest writes anything: every landing file (or source table) must match the
schema declared in the use case, or the read fails naming the file and the column.

Parquet: the footer of each file. CSV: the header line of each file, then one Spark pass over the
text values that finds the first file holding a value that is not of its declared type. JSON
lines: the keys of each file's first record, then the same pass. Delta: the table's schema.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class SourceSchemaError(ValueError):
    """A source does not match the schema declared in the use case."""


SPARK_TYPES = {
    "string": "string",
    "int": "int",
    "long": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def check_columns(where: str, actual: list[str], declared: dict[str, str]) -> None:
    """Refuse a missing or an extra column, naming the file or table."""
    missing = sorted(set(declared) - set(actual))
    extra = sorted(set(actual) - set(declared))
    if missing:
        raise SourceSchemaError(f"{where}: missing column(s) {missing}")
    if extra:
        raise SourceSchemaError(f"{where}: unexpected column(s) {extra} not in the declared schema")


def check_csv_header(path: Path, declared: dict[str, str], *, delimiter: str = ",") -> None:
    """The header names the declared columns; a file with no header or no row is refused."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        first = next(reader, None)
    if header is None:
        raise SourceSchemaError(f"{path}: empty file")
    check_columns(str(path), header, declared)
    if first is None:
        raise SourceSchemaError(f"{path}: header only, no rows")


def check_json_lines(path: Path, declared: dict[str, str]) -> None:
    """The first record is a JSON object with the declared keys (JSON lines: one object a line)."""
    with path.open(encoding="utf-8") as handle:
        line = next((text for text in handle if text.strip()), None)
    if line is None:
        raise SourceSchemaError(f"{path}: empty file")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceSchemaError(f"{path}: not JSON lines ({exc})") from exc
    if not isinstance(record, dict):
        raise SourceSchemaError(f"{path}: first record is not a JSON object")
    check_columns(str(path), list(record), declared)


def first_mistyped(df: DataFrame, *, declared: dict[str, str]) -> DataFrame:
    """For text columns read as strings: one row holding, per declared column, the first file
    (by name) with a value that does not cast to the declared type, else null."""
    from pyspark.sql import functions as F

    aggs = []
    for column, kind in declared.items():
        text = F.col(column)
        bad = text.isNotNull() & (F.trim(text) != "") & text.try_cast(SPARK_TYPES[kind]).isNull()
        aggs.append(F.min(F.when(bad, F.col("_metadata.file_path"))).alias(column))
    return df.agg(*aggs)


def check_values(
    spark: SparkSession,
    files: list[Path],
    source_format: str,
    declared: dict[str, str],
    options: dict[str, str],
) -> None:
    """One pass over the files as text: refuse the first value that is not of its declared type."""
    ddl = ", ".join(f"`{c}` string" for c in declared)
    reader = spark.read.format(source_format).schema(ddl).options(**options)
    if source_format == "csv":
        reader = reader.option("header", "true")
    row = first_mistyped(reader.load([str(p) for p in files]), declared=declared).first()
    assert row is not None  # a global aggregate always returns one row
    for column, kind in declared.items():
        if row[column] is not None:
            raise SourceSchemaError(
                f"{row[column]}: column {column!r} has a value that is not {kind}"
            )


def check_delta(spark: SparkSession, path: str, declared: dict[str, str]) -> int:
    """The Delta table has the declared columns with their declared types; its version now."""
    from delta.tables import DeltaTable

    if not (Path(path) / "_delta_log").is_dir():
        raise SourceSchemaError(f"{path}: not a Delta table")
    table = DeltaTable.forPath(spark, path)
    schema = table.toDF().schema
    check_columns(path, schema.fieldNames(), declared)
    for column, kind in declared.items():
        actual = schema[column].dataType.simpleString()
        if actual != SPARK_TYPES[kind]:
            raise SourceSchemaError(f"{path}: column {column!r} is {actual}, declared {kind}")
    history = table.history(1).select("version").first()
    assert history is not None
    return int(history[0])
