"""All Delta reads and writes. Idempotency per (use case, run_date) lives here and nowhere else.

Every table is a Delta folder under <state_dir>/delta/<table>. Writes for a run_date replace that
run_date's partition in one Delta commit, so a rerun never duplicates and a reader sees either the
old partition or the new one.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from prescore import storage
from prescore.catalog import RUN_DATE
from prescore.identifiers import quote_identifier, quote_spark_identifier
from prescore.platform.spark import temporary_conf

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import duckdb
    from pyspark.sql import Column, DataFrame, Row, SparkSession

    from prescore.config import Settings

log = logging.getLogger(__name__)
# Delta refuses a vacuum horizon under its 7-day default unless this check is off (see vacuum).
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
# Commits a vacuum reads back for the last completed one (removed_since_vacuum): a table vacuumed
# by every daily run has a few commits since; one that has more is vacuumed.
VACUUM_LOOKBACK = 20


class SchemaChangeError(ValueError):
    """A write would change the type of a column of a table whose older rows are never rewritten."""


class TableNotFoundError(FileNotFoundError):
    """A stage asked for a Delta table (or a run_date in it) that was never written."""


def exists(settings: Settings, table: str) -> bool:
    """A table exists once its first commit does (a failed first write leaves only a folder)."""
    return any((settings.table_path(table) / "_delta_log").glob("*.json"))


def _require(settings: Settings, table: str) -> str:
    if not exists(settings, table):
        raise TableNotFoundError(
            f"Delta table {table!r} not found at {settings.table_path(table)}: "
            "run the stage that writes it first"
        )
    return str(settings.table_path(table))


def read(
    spark: SparkSession, settings: Settings, table: str, version: int | None = None
) -> DataFrame:
    """The whole table, at its latest version or at `version`."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(_require(settings, table))


def duckdb_delta_extension() -> Path:
    """DuckDB's delta extension, from the duckdb-extension-delta wheel pinned to DuckDB's version:
    loaded from this file, never downloaded."""
    import duckdb_extension_delta

    return _duckdb_extension(duckdb_extension_delta.__file__, "delta")


def _duckdb_extension(package_file: str, name: str) -> Path:
    import duckdb

    folder = Path(package_file).parent / "extensions"
    return folder / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"


def duckdb_extensions(settings: Settings) -> list[Path]:
    """The extensions a DuckDB session loads to read the state's Delta tables: delta, and httpfs
    when the state is on an object store (both from their pip-installed files)."""
    import duckdb_extension_httpfs

    httpfs = _duckdb_extension(duckdb_extension_httpfs.__file__, "httpfs")
    return [duckdb_delta_extension(), *([httpfs] if settings.state_on_object_store else [])]


def delta_scan_path(settings: Settings, table: str) -> str:
    """A table's location as DuckDB's delta_scan takes it (s3:// on a store, not s3a://)."""
    return storage.s3_uri(settings.table_path(table))


def prepare_duckdb(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Make `con` read the state's Delta tables: the extensions, and the store's secret (a
    temporary one, never written to a file) when the state is on one."""
    for extension in duckdb_extensions(settings):
        con.load_extension(str(extension))
    if settings.state_on_object_store:
        con.execute(storage.duckdb_secret_sql())


@contextlib.contextmanager
def duckdb_reading_delta(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection that reads the state's Delta tables (prepare_duckdb)."""
    import duckdb

    with duckdb.connect() as con:
        prepare_duckdb(con, settings)
        yield con


def read_with_duckdb(
    settings: Settings,
    table: str,
    columns: list[str],
    *,
    where: str = "true",
    params: list[object] | None = None,
) -> list[tuple[object, ...]]:
    """Rows of a Delta table read by DuckDB's delta extension: for readers that must not start a
    JVM (lookups). `where` is SQL over `columns`, its values bound as `params`."""
    selected = ", ".join(quote_identifier(c) for c in columns)
    _require(settings, table)
    with duckdb_reading_delta(settings) as con:
        sql = f"select {selected} from delta_scan(?) where {where}"
        path = delta_scan_path(settings, table)
        return con.execute(sql, [path, *(params or [])]).fetchall()


def read_run(
    spark: SparkSession, settings: Settings, table: str, run_date: date, version: int | None = None
) -> DataFrame:
    """One run_date's partition; an absent partition is an error, not an empty frame.

    The partition's files, once Delta has pruned them by run_date, say it is there without a
    Spark job (Spark writes no file without rows); rows are counted only when no file is named:
    the partition is absent, or the read is served from a cached frame (no files behind it).
    """
    from pyspark.sql import functions as F

    df = read(spark, settings, table, version).where(F.col(RUN_DATE) == F.lit(run_date))
    if not df.inputFiles() and df.limit(1).count() == 0:
        raise TableNotFoundError(f"Delta table {table!r} has no rows for run_date {run_date}")
    return df


def last_commit(spark: SparkSession, settings: Settings, table: str) -> Row:
    """The table's newest commit in its Delta log: version, operation, operationMetrics..."""
    from delta.tables import DeltaTable

    commit = DeltaTable.forPath(spark, _require(settings, table)).history(1).first()
    assert commit is not None  # a Delta table has at least its creating commit
    return commit


def latest_version(settings: Settings, table: str) -> int:
    """The table's newest version: the highest-numbered commit file in its Delta log, which is how
    the Delta protocol defines it. A listing, not a Spark job: a stage reads it first, when its
    JVM is cold and a history read (DeltaTable.history) costs a second more."""
    log_dir = settings.table_path(table) / "_delta_log"
    commits = [int(f.stem) for f in log_dir.glob("*.json") if f.stem.isdigit()]
    if not commits:
        _require(settings, table)  # raises: the table's not-found error
    return max(commits)


def written_rows(
    spark: SparkSession, settings: Settings, table: str, run_date: date, version: int
) -> int:
    """The rows of run_date that `replace_run` wrote as `version`: its commit's numOutputRows
    (the Delta log), or, when a later commit came first or the metric is off, a count."""
    commit = last_commit(spark, settings, table)
    metrics = commit["operationMetrics"] or {}
    if commit["version"] == version and "numOutputRows" in metrics:
        return int(metrics["numOutputRows"])
    return read_run(spark, settings, table, run_date, version).count()


def replace_run(
    df: DataFrame, settings: Settings, table: str, run_date: date, *, rewrite_older: bool = True
) -> int:
    """Write `df` as the run_date partition of `table`, replacing what was there; returns the version.

    The frame must carry a run_date column equal to `run_date` on every row: Delta's
    replaceWhere constraint check refuses the commit otherwise, so nothing else is touched.

    A use case's schema may change between runs (a feature moved, a derived column added or
    retyped): a new column is added to the table (older run dates read it as null); a column
    whose type changed makes one rewrite of the whole table in the new schema (see
    `_rewrite_in_new_schema`), and a column the frame no longer has stays, null in this run date.
    With `rewrite_older` false (raw, never modified), a retyped column is a SchemaChangeError.
    """
    retyped = _retyped_columns(df, settings, table)
    if retyped and not rewrite_older:
        changes = ", ".join(f"{c} ({old} -> {new})" for c, (old, new) in sorted(retyped.items()))
        raise SchemaChangeError(
            f"{table}: columns changed type: {changes}; its older run dates are never rewritten: "
            f"declare the old type, or remove the table first (prescore reset)"
        )
    if retyped:
        _rewrite_in_new_schema(df, settings, table, run_date, retyped)
    else:
        (
            df.write.format("delta")
            .mode("overwrite")
            .partitionBy(RUN_DATE)
            .option("replaceWhere", f"{RUN_DATE} = DATE'{run_date.isoformat()}'")
            .option("mergeSchema", "true")
            .save(str(settings.table_path(table)))
        )
    return latest_version(settings, table)


def replace_runs(
    frames: Mapping[str, DataFrame], settings: Settings, run_date: date
) -> dict[str, int]:
    """replace_run of each table's frame, all at once; the tables' new versions.

    A small write is mostly the driver's Delta work (planning, the commit, the version read
    back), which leaves the other core idle: a stage's small writes share the cores this way.
    Each table still commits alone, as one after the other would: one failing does not undo
    another, and every write has ended when this returns or raises.
    """
    with ThreadPoolExecutor(max_workers=len(frames) or 1, thread_name_prefix="delta") as writing:
        started = {
            table: writing.submit(replace_run, frame, settings, table, run_date)
            for table, frame in frames.items()
        }
        return {table: write.result() for table, write in started.items()}


def _retyped_columns(df: DataFrame, settings: Settings, table: str) -> dict[str, tuple[str, str]]:
    """The columns of `df` the table holds with another type: name -> (old type, new type)."""
    if not exists(settings, table):
        return {}
    old = {f.name: f.dataType for f in read(df.sparkSession, settings, table).schema.fields}
    return {
        f.name: (old[f.name].simpleString(), f.dataType.simpleString())
        for f in df.schema.fields
        if f.name in old and old[f.name] != f.dataType
    }


def _rewrite_in_new_schema(
    df: DataFrame,
    settings: Settings,
    table: str,
    run_date: date,
    retyped: dict[str, tuple[str, str]],
) -> None:
    """Replace the whole table, in one commit, by `df` for `run_date` and the other run dates
    in `df`'s schema: a retyped column's older values cast with try_cast (null where they do not
    fit), a column `df` lacks dropped. Older versions keep the old values (time travel)."""
    from pyspark.sql import functions as F

    older = read(df.sparkSession, settings, table).where(F.col(RUN_DATE) != F.lit(run_date))
    dropped = sorted(set(older.columns) - set(df.columns))
    log.warning(
        "%s: the schema changed: run dates other than %s are rewritten with %s cast by try_cast "
        "(null where a value does not fit)%s",
        table,
        run_date,
        ", ".join(f"{c} ({old} -> {new})" for c, (old, new) in sorted(retyped.items())),
        f", and columns {dropped} dropped" if dropped else "",
    )
    casts = [
        (
            F.col(f.name).try_cast(f.dataType)
            if f.name in older.columns
            else F.lit(None).cast(f.dataType)
        ).alias(f.name)
        for f in df.schema.fields
    ]
    (
        older.select(*casts)
        .unionByName(df)
        .write.format("delta")
        .mode("overwrite")
        .partitionBy(RUN_DATE)
        .option("overwriteSchema", "true")
        .save(str(settings.table_path(table)))
    )


def append(df: DataFrame, settings: Settings, table: str) -> int:
    """Append rows (for logs, where every row is an event); returns the new version."""
    df.write.format("delta").mode("append").save(str(settings.table_path(table)))
    return latest_version(settings, table)


def delete_runs_before(
    spark: SparkSession, settings: Settings, table: str, cutoff: date
) -> dict[str, object]:
    """Delete every run_date partition older than `cutoff` in one Delta commit, then vacuum the
    files it removed: the rows leave the latest version at once and the disk with the vacuum.

    Returns what went: the run dates, rows and files, and the version of the delete (None when
    nothing was older). A table never written is reported absent, not an error.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    if not exists(settings, table):
        return {"absent": True}
    older = F.col(RUN_DATE) < F.lit(cutoff)
    expired = read(spark, settings, table).where(older).select(RUN_DATE).distinct().collect()
    run_dates = sorted(row[0] for row in expired)
    deleted_rows, version = 0, None
    if run_dates:
        DeltaTable.forPath(spark, str(settings.table_path(table))).delete(older)
        last = last_commit(spark, settings, table)
        version = int(last["version"])
        deleted_rows = int(last["operationMetrics"].get("numDeletedRows", 0))
    files = vacuum_removed_files(spark, settings, table)
    # The vacuum leaves the emptied partition folders behind (an object store has no folders).
    for day in run_dates if not settings.state_on_object_store else []:
        with contextlib.suppress(OSError):
            (settings.table_path(table) / f"{RUN_DATE}={day.isoformat()}").rmdir()
    return {
        "deleted_run_dates": [day.isoformat() for day in run_dates],
        "deleted_rows": deleted_rows,
        "version": version,
        "vacuumed_files": files,
    }


def vacuum_removed_files(spark: SparkSession, settings: Settings, table: str) -> int:
    """Delete from disk every data file the table's log records as removed; returns how many.

    The horizon is 0 hours, on purpose: a removed file of raw or quarantine holds PII past its
    retention, and keeping it for time travel would keep the PII. It is safe in LITE mode only:
    LITE deletes the files the log says were removed and never lists the folder, so the data
    files of a writer that has not committed yet (what Delta's 7-day check protects) are never
    touched. The cost: those tables time-travel only to their latest version once vacuumed.
    """
    if not removed_since_vacuum(spark, settings, table):
        return 0  # a vacuum would find nothing, and still write two commits
    path = str(settings.table_path(table))
    with temporary_conf(spark, RETENTION_CHECK, "false"):  # this session, this one command
        spark.sql(f"VACUUM delta.{quote_spark_identifier(path)} LITE RETAIN 0 HOURS").collect()
    last = last_commit(spark, settings, table)
    if last["operation"] != "VACUUM END":
        return 0
    return int(last["operationMetrics"].get("numDeletedFiles", 0))


def removed_since_vacuum(spark: SparkSession, settings: Settings, table: str) -> bool:
    """Whether a commit since the table's last completed vacuum may have removed a data file.

    Read from the newest VACUUM_LOOKBACK commits' metrics (one Spark job, against a vacuum's
    twenty-odd): a commit rules a removal out only when it says so (numRemovedFiles 0) or is the
    table's first. Any other commit (an operation that names its removals otherwise, a failed
    vacuum), or no completed vacuum that far back, counts as one: a file of raw or quarantine
    left on disk would keep its PII.
    """
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, _require(settings, table)).history(VACUUM_LOOKBACK)
    commits = history.select("version", "operation", "operationParameters", "operationMetrics")
    newest_first = commits.collect()
    for commit in newest_first:
        if commit["operation"] == "VACUUM END":
            if (commit["operationParameters"] or {}).get("status") == "COMPLETED":
                return False
        elif (
            commit["version"] > 0
            and (commit["operationMetrics"] or {}).get("numRemovedFiles") != "0"
        ):
            return True
    return newest_first[-1]["version"] > 0  # the history went back to the table's first commit


def remove(settings: Settings, table: str) -> bool:
    """Delete a whole table, its log and its files (`prescore reset`); False if there was none.
    Not a Delta operation: no reader may be reading it, which the caller makes sure of."""
    return storage.remove_tree(settings.table_path(table))


def delete_where(spark: SparkSession, settings: Settings, table: str, condition: Column) -> None:
    """Delete the rows matching `condition` in one Delta commit (a log's row that never took effect)."""
    from delta.tables import DeltaTable

    DeltaTable.forPath(spark, _require(settings, table)).delete(condition)
