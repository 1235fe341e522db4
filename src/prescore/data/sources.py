"""A use case's source: where its landing files are, how they are read, and the checks before
ingest writes anything: every landing file (or source table) must hold the columns declared in
the use case (and no other, unless `columns: ignore_undeclared`), or the read fails naming the
file and the column.

Parquet: the footer of each file. Delta: the table's schema. JDBC: the columns and types the
driver reports, then one pass that counts the rows and finds text dates or timestamps that do not
parse (SQLite, say, keeps dates as text). CSV: the header line of each file; JSON lines: the keys
of each file's first record; a text file may be compressed (`.csv.gz`, `.json.bz2`: Spark reads
both by name). Text files are then read as text, by column name, and parsed here
(`parse_text`): a value in `null_values` is null, a value that does not cast to its declared type
is null with its text kept in the BAD_VALUES lineage column. With `on_bad_value: fail` one pass
counts such rows and the error names the first one (`check_parsed`); with `quarantine` they are
written to raw as they are and the clean stage quarantines them.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import os
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from prescore.catalog import BAD_VALUES, BAD_VALUES_TYPE, INGESTED_AT, RUN_DATE, SOURCE_FILE
from prescore.identifiers import quote_spark_identifier

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, SourceSettings


class SourceSchemaError(ValueError):
    """A source does not match the schema declared in the use case."""


# A text file's compression, by the suffix after its format's (as Hadoop's codecs choose it).
COMPRESSIONS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open}
TEXT_FORMATS = ("csv", "json")


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """A text file to read, decompressed when its name ends in .gz or .bz2. What a damaged or
    misnamed file raises while read (not gzip, a cut stream, not UTF-8) names the file."""
    opener = COMPRESSIONS.get(path.suffix.lower())
    try:
        if opener is None:
            with path.open(newline="", encoding="utf-8") as handle:
                yield handle
        else:  # opened through the path, which may be on an object store
            with path.open("rb") as raw, opener(raw, "rt", newline="", encoding="utf-8") as handle:
                yield handle
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SourceSchemaError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc


SPARK_TYPES = {
    "string": "string",
    "int": "int",
    "long": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def check_columns(
    where: str, actual: list[str], declared: dict[str, str], *, ignore_undeclared: bool = False
) -> None:
    """Refuse a missing column, and an extra one unless `ignore_undeclared`, naming the file or
    table."""
    missing = sorted(set(declared) - set(actual))
    extra = sorted(set(actual) - set(declared))
    if missing:
        raise SourceSchemaError(f"{where}: missing column(s) {missing}")
    if extra and not ignore_undeclared:
        raise SourceSchemaError(
            f"{where}: unexpected column(s) {extra} not in the declared schema "
            "(source.columns: ignore_undeclared leaves them out)"
        )


def check_csv_header(
    path: Path, declared: dict[str, str], *, delimiter: str = ",", ignore_undeclared: bool = False
) -> list[str]:
    """The header names the declared columns; a file with no header or no row is refused.
    Returns the header."""
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        first = next(reader, None)
    if header is None:
        raise SourceSchemaError(f"{path}: empty file")
    check_columns(str(path), header, declared, ignore_undeclared=ignore_undeclared)
    if first is None:
        raise SourceSchemaError(f"{path}: header only, no rows")
    return header


def check_json_lines(
    path: Path, declared: dict[str, str], *, ignore_undeclared: bool = False
) -> None:
    """The first record is a JSON object with the declared keys (JSON lines: one object a line)."""
    with open_text(path) as handle:
        line = next((text for text in handle if text.strip()), None)
    if line is None:
        raise SourceSchemaError(f"{path}: empty file")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceSchemaError(f"{path}: not JSON lines ({exc})") from exc
    if not isinstance(record, dict):
        raise SourceSchemaError(f"{path}: first record is not a JSON object")
    check_columns(str(path), list(record), declared, ignore_undeclared=ignore_undeclared)


def check_delta(
    spark: SparkSession, path: str, declared: dict[str, str], *, ignore_undeclared: bool = False
) -> int:
    """The Delta table has the declared columns with their declared types; its version now."""
    from delta.tables import DeltaTable

    if not (Path(path) / "_delta_log").is_dir():
        raise SourceSchemaError(f"{path}: not a Delta table")
    table = DeltaTable.forPath(spark, path)
    schema = table.toDF().schema
    check_columns(path, schema.fieldNames(), declared, ignore_undeclared=ignore_undeclared)
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
        jdbc_name(source),
        {f.name: f.dataType.simpleString() for f in df.schema},
        declared,
        ignore_undeclared=source.columns == "ignore_undeclared",
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


def check_jdbc_types(
    where: str, actual: dict[str, str], declared: dict[str, str], *, ignore_undeclared: bool = False
) -> None:
    """The driver reports the declared columns, each of a type its declared type accepts."""
    check_columns(where, list(actual), declared, ignore_undeclared=ignore_undeclared)
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


def check_parquet_schema(
    path: Path, declared: dict[str, str], *, ignore_undeclared: bool = False
) -> None:
    """Refuse a Parquet file with a missing, extra (unless `ignore_undeclared`) or retyped column,
    or no rows (reads the footer only)."""
    try:
        with path.open("rb") as raw:
            footer = pq.ParquetFile(raw)
            schema, rows = footer.schema_arrow, footer.metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceSchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
    if rows == 0:  # an export that wrote its schema and nothing else
        raise SourceSchemaError(f"{path}: no rows (an empty export?)")
    actual = {field.name: field.type for field in schema}
    check_columns(str(path), list(actual), declared, ignore_undeclared=ignore_undeclared)
    for column, kind in declared.items():
        if not any(accepts(actual[column]) for accepts in _ARROW_ACCEPTS[kind]):
            raise SourceSchemaError(
                f"{path}: column {column!r} is {actual[column]}, declared {kind}"
            )


def landing_files(folder: Path, source: SourceSettings) -> list[Path]:
    names = [f"*.{source.format}"]
    if source.format in TEXT_FORMATS:
        names += [f"*.{source.format}{suffix}" for suffix in COMPRESSIONS]
    files = sorted({p for name in names for p in folder.glob(name) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"no {source.format} files for this run_date in {folder}")
    empty = [p for p in files if p.stat().st_size == 0]
    if empty:
        raise SourceSchemaError(f"{empty[0]}: empty file")
    return files


def read_parquet(spark: SparkSession, files: list[Path], source: SourceSettings) -> DataFrame:
    """The Parquet files' declared columns (by name) as the declared types, with each row's file
    name as SOURCE_FILE."""
    from pyspark.sql import functions as F

    ddl = ", ".join(
        f"{quote_spark_identifier(c)} {SPARK_TYPES[t]}" for c, t in source.schema_.items()
    )
    df = spark.read.format("parquet").schema(ddl).options(**source.options)
    frame = df.load([str(p) for p in files])
    return frame.withColumn(SOURCE_FILE, F.col("_metadata.file_name"))


ROW_ORDER = "_row_order"  # a text row's place in its file; a helper column, never written


def read_text(
    spark: SparkSession, files: list[Path], source: SourceSettings, *, headers: list[list[str]]
) -> DataFrame:
    """The text files' declared columns as strings, picked by name, with SOURCE_FILE (the file
    name) and ROW_ORDER (the row's place in its file: its split's offset, then its rank there).

    Spark's CSV reader maps a given schema to the columns by position, so the CSV files are read
    in groups of equal `headers` (one a file), each with its own header as the schema; JSON maps
    keys by name. FAILFAST: a line that is not a record stops the read.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    groups: dict[tuple[str, ...], list[str]] = {}
    for path, header in zip(files, headers, strict=True):
        # an undeclared column is never selected: a placeholder name spares Spark an empty or
        # repeated one (R's write.csv heads its row names with "")
        names = [c if c in source.schema_ else f"_undeclared_{i}" for i, c in enumerate(header)]
        groups.setdefault(tuple(names), []).append(str(path))
    frames = []
    for schema, paths in groups.items():
        ddl = ", ".join(f"{quote_spark_identifier(c)} string" for c in schema)
        reader = spark.read.format(source.format).schema(ddl).options(**source.options)
        reader = reader.option("mode", "FAILFAST")
        if source.format == "csv":
            reader = reader.option("header", "true")
        df = reader.load(paths)
        order = F.struct(F.col("_metadata.file_block_start"), F.monotonically_increasing_id())
        frames.append(
            df.select(
                *[F.col(quote_spark_identifier(c)).alias(c) for c in source.schema_],
                F.col("_metadata.file_name").alias(SOURCE_FILE),
                order.alias(ROW_ORDER),
            )
        )
    return reduce(lambda a, b: a.unionByName(b), frames)


def parse_text(df: DataFrame, *, declared: dict[str, str], null_values: list[str]) -> DataFrame:
    """Each declared text column as its declared type: a value in `null_values` (whitespace
    trimmed) is null, and so is a value that does not cast, its text kept in BAD_VALUES
    (column -> text; null when every value of the row parsed). Other columns pass through."""
    from pyspark.sql import functions as F

    typed, unparsed = [], []
    for column, kind in declared.items():
        text = F.col(quote_spark_identifier(column))
        missing = text.isNull()
        if null_values:
            missing = missing | F.trim(text).isin(null_values)
        value = text if kind == "string" else text.try_cast(SPARK_TYPES[kind])
        typed.append(F.when(~missing, value).alias(column))
        if kind != "string":
            entry = F.struct(F.lit(column).alias("key"), text.alias("value"))
            unparsed.append(F.when(~missing & value.isNull(), entry))
    if unparsed:
        found = F.filter(F.array(*unparsed), lambda entry: entry.isNotNull())
        bad = F.when(F.size(found) > 0, F.map_from_entries(found))
    else:
        bad = F.lit(None)
    rest = [F.col(quote_spark_identifier(c)) for c in df.columns if c not in declared]
    return df.select(*typed, *rest, bad.cast(BAD_VALUES_TYPE).alias(BAD_VALUES))


def describe_bad_values(
    values: dict[str, str], declared: dict[str, str], *, hidden: Collection[str] = ()
) -> str:
    """`column 'x' value 'abc' is not double` for each column of a row's BAD_VALUES, in declared
    order; the text of a `hidden` (PII) column is not shown."""
    parts = []
    for column, kind in declared.items():
        if column in values:
            shown = "(PII, not shown)" if column in hidden else repr(values[column])
            parts.append(f"column {column!r} value {shown} is not {kind}")
    return ", ".join(parts)


def check_parsed(
    parsed: DataFrame,
    files: list[Path],
    source: SourceSettings,
    *,
    headers: list[list[str]],
    hidden: Collection[str] = (),
) -> None:
    """Refuse text files holding a value that does not parse as its declared type, naming the
    first such file (by name), its first bad row, the columns and values, and how many rows are bad.

    One pass counts the bad rows; only when there are some, a second reads the first bad file
    alone to number its rows: row n is the n-th record after a CSV's header (its line is n + 1
    when no value spans lines and no line is blank), or the n-th JSON record.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    bad = F.col(BAD_VALUES).isNotNull()
    found = parsed.agg(
        F.count_if(bad).alias("rows"), F.min(F.when(bad, F.col(SOURCE_FILE))).alias("file")
    ).first()
    assert found is not None  # a global aggregate always returns one row
    if not found["rows"]:
        return
    index = next(i for i, p in enumerate(files) if p.name == found["file"])
    path = files[index]
    alone = parse_text(
        read_text(parsed.sparkSession, [path], source, headers=[headers[index]]),
        declared=source.schema_,
        null_values=source.null_values,
    )
    numbered = alone.withColumn("_row", F.row_number().over(Window.orderBy(ROW_ORDER)))
    first = numbered.where(bad).orderBy("_row").select("_row", BAD_VALUES).first()
    assert first is not None  # the file holds a bad row: the first pass found it
    described = describe_bad_values(dict(first[BAD_VALUES]), source.schema_, hidden=hidden)
    row = (
        f"row {first['_row']} after the header"
        if source.format == "csv"
        else f"record {first['_row']}"
    )
    raise SourceSchemaError(
        f"{path}: {row}: {described}; {found['rows']} row(s) in "
        f"{len(files)} file(s) have a value that does not parse as its declared type "
        "(source.on_bad_value: quarantine sends such rows to quarantine instead)"
    )


def with_ingest_lineage(
    df: DataFrame, *, run_date: date, ingested_at: datetime, source: str | None = None
) -> DataFrame:
    """Add run_date, the source of each row (`source`, else the file name the read put in
    SOURCE_FILE), the ingest time, and BAD_VALUES (null) when the read left none."""
    from pyspark.sql import functions as F

    lineage = {
        RUN_DATE: F.lit(run_date),
        SOURCE_FILE: F.lit(source) if source is not None else F.col(SOURCE_FILE),
        INGESTED_AT: F.lit(ingested_at),
        # typed sources leave none: every value is of its declared type
        BAD_VALUES: F.col(BAD_VALUES) if BAD_VALUES in df.columns else F.lit(None),
    }
    data = [F.col(quote_spark_identifier(c)) for c in df.columns if c not in lineage]
    lineage[BAD_VALUES] = lineage[BAD_VALUES].cast(BAD_VALUES_TYPE)
    return df.select(*data, *[value.alias(name) for name, value in lineage.items()])


def check_landing_files(files: list[Path], source: SourceSettings) -> list[list[str]]:
    """Every file holds the declared columns (and no other, unless ignore_undeclared): Parquet's
    footer, CSV's header, the first JSON record's keys. Returns each file's columns as the read
    must name them (a CSV's header; the declared columns otherwise)."""
    declared = source.schema_
    ignore = source.columns == "ignore_undeclared"
    headers = []
    for path in files:
        if source.format == "parquet":
            check_parquet_schema(path, declared, ignore_undeclared=ignore)
        elif source.format == "csv":
            delimiter = source.options.get("sep", source.options.get("delimiter", ","))
            headers.append(
                check_csv_header(path, declared, delimiter=delimiter, ignore_undeclared=ignore)
            )
            continue
        else:
            check_json_lines(path, declared, ignore_undeclared=ignore)
        headers.append(list(declared))
    return headers
