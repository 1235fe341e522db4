"""A use case's source: where its landing files are, how they are read, and the checks before
ingest writes anything: every landing file (or source table) must match the schema declared in
the use case, or the read fails naming the file and the column.

Parquet: the footer of each file. CSV: the header line of each file, then one Spark pass over the
text values that finds the first file holding a value that is not of its declared type. JSON
lines: the keys of each file's first record, then the same pass. Delta: the table's schema.
JDBC: the columns and types the driver reports, then one pass that counts the rows and finds text
dates or timestamps that do not parse (SQLite, say, keeps dates as text).
"""

from __future__ import annotations

import csv
import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from prescore.catalog import INGESTED_AT, RUN_DATE, SOURCE_FILE
from prescore.identifiers import quote_spark_identifier

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, SourceSettings


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
    ddl = ", ".join(f"{quote_spark_identifier(c)} string" for c in declared)
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


# ---------------------------------------------------------------- JDBC

_INTEGRAL = ("tinyint", "smallint", "int")
# Spark types (as the driver's JDBC types map to them) each declared type accepts; a text column
# may hold dates or timestamps (SQLite has no date type), checked value by value.
JDBC_ACCEPTS = {
    "string": ("string",),
    "int": _INTEGRAL,
    "long": (*_INTEGRAL, "bigint"),
    "double": (*_INTEGRAL, "bigint", "float", "double", "decimal"),
    "boolean": ("boolean",),
    "date": ("date", "string"),
    "timestamp": ("timestamp", "timestamp_ntz", "date", "string"),
}


def jdbc_name(source: SourceSettings) -> str:
    """The url and the table (or `query`) that name a JDBC source in errors, logs and lineage;
    the url holds no credential (the config refuses one)."""
    return f"{source.url} table {source.table}" if source.table else f"{source.url} query"


def jdbc_credentials(source: SourceSettings) -> dict[str, str]:
    """The user and password from the environment variables the source names."""
    found = {}
    for option, variable in (("user", source.user_env), ("password", source.password_env)):
        if variable is None:
            continue
        if not os.environ.get(variable):
            raise SourceSchemaError(
                f"{jdbc_name(source)}: environment variable {variable} (the {option}) is not set"
            )
        found[option] = os.environ[variable]
    return found


def read_jdbc(spark: SparkSession, source: SourceSettings) -> DataFrame:
    """The JDBC table or query, checked against the declared schema and cast to it.

    Loading asks the database for the columns only; the check pass then reads every row once.
    A driver or database error is raised naming the source, with any password blanked.
    """
    credentials = jdbc_credentials(source)
    reader = spark.read.format("jdbc").options(**source.options)
    reader = reader.option("url", source.url).option("driver", source.driver)
    if source.table:
        reader = reader.option("dbtable", source.table)
    else:
        reader = reader.option("query", source.query)
    try:
        df = reader.options(**credentials).load()
    except Exception as exc:  # py4j and Spark raise many kinds; all mean: cannot read it
        raise SourceSchemaError(_jdbc_failure(source, exc, credentials)) from None
    declared = source.schema_
    check_jdbc_types(
        jdbc_name(source), {f.name: f.dataType.simpleString() for f in df.schema}, declared
    )
    check_jdbc_values(df, source)
    from pyspark.sql import functions as F

    return df.select(*[F.col(c).cast(SPARK_TYPES[t]).alias(c) for c, t in declared.items()])


def _jdbc_failure(source: SourceSettings, exc: Exception, credentials: dict[str, str]) -> str:
    text = str(exc)
    if "ClassNotFoundException" in text or "No suitable driver" in text:
        return (
            f"{jdbc_name(source)}: JDBC driver {source.driver} is not loaded; the Spark session "
            f"must start with {source.driver_package} in spark.jars.packages"
        )
    reason = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    for secret in credentials.values():
        reason = reason.replace(secret, "***")
    return f"{jdbc_name(source)}: cannot read ({reason.strip()[:300]})"


def check_jdbc_types(where: str, actual: dict[str, str], declared: dict[str, str]) -> None:
    """The driver reports the declared columns, each of a type its declared type accepts."""
    check_columns(where, list(actual), declared)
    for column, kind in declared.items():
        base = actual[column].split("(")[0]  # decimal(10,2) -> decimal
        if base not in JDBC_ACCEPTS[kind]:
            raise SourceSchemaError(
                f"{where}: column {column!r} is {actual[column]}, declared {kind}"
            )


def check_jdbc_values(df: DataFrame, source: SourceSettings) -> None:
    """One pass: the source has rows, and text dates or timestamps parse."""
    from pyspark.sql import functions as F

    texts = [
        c
        for c, kind in source.schema_.items()
        if kind in ("date", "timestamp") and df.schema[c].dataType.simpleString() == "string"
    ]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    for column in texts:
        text = F.col(column)
        parsed = text.try_cast(SPARK_TYPES[source.schema_[column]])
        aggs.append(F.count_if(text.isNotNull() & parsed.isNull()).alias(column))
    row = df.agg(*aggs).first()
    assert row is not None  # a global aggregate always returns one row
    if row["_rows"] == 0:
        raise SourceSchemaError(f"{jdbc_name(source)}: no rows")
    for column in texts:
        if row[column]:
            kind = source.schema_[column]
            raise SourceSchemaError(
                f"{jdbc_name(source)}: column {column!r} has {row[column]} value(s) that are not {kind}"
            )


# ---------------------------------------------------------------- landing files


def source_location(settings: Settings, source: SourceSettings) -> Path:
    """Where a file or Delta source lives: its `path`, under the landing folder when relative."""
    path = Path(source.path)
    return path if path.is_absolute() else settings.landing_dir / path


def landing_dir(settings: Settings, source: SourceSettings, run_date: date) -> Path:
    """The folder of one run date's landing files: <source path>/run_date=<date>."""
    return source_location(settings, source) / f"run_date={run_date.isoformat()}"


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


def with_ingest_lineage(
    df: DataFrame, *, run_date: date, ingested_at: datetime, source: str | None = None
) -> DataFrame:
    """Add run_date, the source of each row (its file name, or `source`) and the ingest time."""
    from pyspark.sql import functions as F

    origin = F.lit(source) if source is not None else F.col("_metadata.file_name")
    return (
        df.withColumn(RUN_DATE, F.lit(run_date))
        .withColumn(SOURCE_FILE, origin)
        .withColumn(INGESTED_AT, F.lit(ingested_at))
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
