"""Ingest from a JDBC source: a real SQLite file written with sqlite3, read through Spark's JDBC
source with the sqlite-jdbc driver (in the test session's packages, conf/env/test.yaml). The
declared schema is enforced, a mismatch names the table and the column and writes nothing, and the
credentials come from the environment and never reach a log or a table."""

from __future__ import annotations

import logging
import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import Settings, SourceSettings, UseCase
from prescore.context import RunContext
from prescore.data.sources import SourceSchemaError, jdbc_name
from prescore.demo.datagen import churn_chunks
from prescore.platform import tables
from prescore.stages import ingest

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 4)
DRIVER = "org.sqlite.JDBC"
PACKAGE = "org.xerial:sqlite-jdbc:3.54.1.0"
USER, PASSWORD = "PRESCORE_TEST_JDBC_USER", "PRESCORE_TEST_JDBC_PASSWORD"
SECRET = "pw-7f3c-never-logged"
# SQLite column types for the declared types; dates and timestamps are ISO text in SQLite.
SQLITE_TYPES = {"string": "TEXT", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE"}


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    frame = next(churn_chunks(30, RUN_DATE, seed=5))
    return frame.assign(
        signup_date=frame["signup_date"].astype(str), updated_at=frame["updated_at"].astype(str)
    )


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USER, "prescore")
    monkeypatch.setenv(PASSWORD, SECRET)


def write_sqlite(path: Path, frame: pd.DataFrame, types: dict[str, str]) -> Path:
    """A SQLite file with one table `customers` of `frame`, its columns typed as `types`."""
    columns = ", ".join(f'"{c}" {SQLITE_TYPES.get(types.get(c, "string"), "TEXT")}' for c in frame)
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE customers ({columns})")
        marks = ", ".join("?" for _ in frame.columns)
        rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False)
        connection.executemany(f"INSERT INTO customers VALUES ({marks})", list(rows))
    connection.close()
    return path


def jdbc_context(
    spark: SparkSession, settings: Settings, churn: UseCase, database: Path, **source: str
) -> RunContext:
    fields = {"table": "customers", **source}
    settings_source = SourceSettings.model_validate(
        {
            "format": "jdbc",
            "url": f"jdbc:sqlite:{database}",
            "driver": DRIVER,
            "driver_package": PACKAGE,
            "user_env": USER,
            "password_env": PASSWORD,
            "schema": churn.source.schema_,
            **fields,
        }
    )
    usecase = churn.model_copy(update={"source": settings_source, "entity": "src_jdbc"})
    return RunContext(settings, usecase, RUN_DATE, spark)


def test_jdbc_table_is_ingested_with_declared_types_and_no_password_anywhere(
    spark, fresh_settings, churn, sample, credentials, tmp_path, caplog, capfd
):
    database = write_sqlite(tmp_path / "crm.db", sample, churn.source.schema_)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    caplog.set_level(logging.INFO)

    summary = ingest.run(ctx)

    raw = tables.read_run(spark, fresh_settings, ctx.usecase.raw_table, RUN_DATE)
    assert summary["rows"] == len(sample) == raw.count()
    types = dict(raw.dtypes)
    assert (types["tenure_months"], types["monthly_charges"]) == ("int", "double")
    assert (types["signup_date"], types["updated_at"]) == ("date", "timestamp")
    assert raw.where(F.col("signup_date").isNull()).count() == sample["signup_date"].isna().sum()
    origin = jdbc_name(ctx.usecase.source)
    assert [r[0] for r in raw.select("_source_file").distinct().collect()] == [origin]
    assert f"from {origin}" in caplog.text
    table_text = "\n".join(r[0] for r in raw.select(F.to_json(F.struct("*"))).collect())
    logged = caplog.text + "".join(capfd.readouterr())
    assert SECRET not in logged and SECRET not in table_text and SECRET not in str(summary)


def test_jdbc_query_source_is_ingested(spark, fresh_settings, churn, sample, credentials, tmp_path):
    database = write_sqlite(tmp_path / "crm.db", sample, churn.source.schema_)
    query = "SELECT * FROM customers WHERE tenure_months >= 0"
    ctx = jdbc_context(spark, fresh_settings, churn, database, table=None, query=query)

    summary = ingest.run(ctx)

    assert summary["rows"] == int((sample["tenure_months"] >= 0).sum())


def refused(ctx: RunContext, match: str) -> None:
    """Ingest fails with `match` and writes no raw table."""
    with pytest.raises(SourceSchemaError, match=match):
        ingest.run(ctx)
    assert not tables.exists(ctx.settings, ctx.usecase.raw_table)


def test_jdbc_table_missing_a_column_is_refused_naming_table_and_column(
    spark, fresh_settings, churn, sample, credentials, tmp_path
):
    database = write_sqlite(tmp_path / "crm.db", sample.drop(columns=["email"]), {})
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    refused(ctx, r"crm\.db table customers: missing column\(s\) \['email'\]")


def test_jdbc_retyped_column_is_refused(
    spark, fresh_settings, churn, sample, credentials, tmp_path
):
    types = {**churn.source.schema_, "tenure_months": "string"}
    database = write_sqlite(tmp_path / "crm.db", sample, types)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    refused(ctx, r"table customers: column 'tenure_months' is string, declared int")


def test_jdbc_text_date_that_does_not_parse_is_refused(
    spark, fresh_settings, churn, sample, credentials, tmp_path
):
    bad = sample.assign(signup_date=["yesterday", *sample["signup_date"][1:]])
    database = write_sqlite(tmp_path / "crm.db", bad, churn.source.schema_)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    refused(ctx, r"table customers: column 'signup_date' has 1 value\(s\) that are not date")


def test_jdbc_empty_table_is_refused(spark, fresh_settings, churn, sample, credentials, tmp_path):
    database = write_sqlite(tmp_path / "crm.db", sample[:0], churn.source.schema_)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    refused(ctx, r"table customers: no rows")


def test_jdbc_password_variable_unset_is_refused_naming_it(
    spark, fresh_settings, churn, sample, tmp_path, monkeypatch
):
    monkeypatch.setenv(USER, "prescore")
    monkeypatch.delenv(PASSWORD, raising=False)
    database = write_sqlite(tmp_path / "crm.db", sample, churn.source.schema_)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    refused(ctx, rf"environment variable {PASSWORD} \(the password\) is not set")


def test_jdbc_driver_missing_from_the_session_is_refused_naming_its_package(
    spark, fresh_settings, churn, sample, credentials, tmp_path
):
    database = write_sqlite(tmp_path / "crm.db", sample, churn.source.schema_)
    ctx = jdbc_context(spark, fresh_settings, churn, database)
    postgres = ctx.usecase.source.model_copy(
        update={
            "url": "jdbc:postgresql://127.0.0.1:9/crm",
            "driver": "org.postgresql.Driver",
            "driver_package": "org.postgresql:postgresql:42.7.14",
        }
    )
    ctx = RunContext(
        fresh_settings, ctx.usecase.model_copy(update={"source": postgres}), RUN_DATE, spark
    )
    refused(
        ctx, r"driver org\.postgresql\.Driver is not loaded.*org\.postgresql:postgresql:42\.7\.14"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "jdbc:postgresql://db/crm?user=a&password=b"}, "credentials come from the env"),
        ({"options": {"Password": "b"}}, "credentials come from the environment"),
        ({"table": None}, "exactly one of table or query"),
        ({"query": "select 1"}, "exactly one of table or query"),
        ({"driver": None}, "needs driver"),
        ({"path": "crm"}, "not path"),
    ],
)
def test_jdbc_source_config_is_checked(fields, message):
    source = {
        "format": "jdbc",
        "url": "jdbc:postgresql://db:5432/crm",
        "table": "customers",
        "driver": "org.postgresql.Driver",
        "driver_package": "org.postgresql:postgresql:42.7.14",
        "schema": {"customer_id": "string"},
    }
    with pytest.raises(ValidationError, match=message):
        SourceSettings.model_validate({**source, **fields})


def test_file_source_refuses_jdbc_fields():
    with pytest.raises(ValidationError, match=r"\['url'\] only apply to format jdbc"):
        SourceSettings.model_validate(
            {"format": "csv", "path": "x", "url": "jdbc:sqlite:x", "schema": {"a": "string"}}
        )
