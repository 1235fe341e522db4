"""Ingest refuses landing files that do not match the declared schema, naming the file and column."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import churn_chunks, landing_dir
from prescore.platform import tables
from prescore.stages import ingest
from prescore.stages.ingest import SourceSchemaError

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 2)


def _write(
    settings: Settings, usecase: UseCase, frame: pd.DataFrame, name: str = "part-0.parquet"
) -> str:
    folder = landing_dir(settings, usecase, RUN_DATE)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, coerce_timestamps="us")
    return str(path)


@pytest.fixture
def sample() -> pd.DataFrame:
    return next(churn_chunks(50, RUN_DATE, seed=1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["email"]), r"missing column\(s\) \['email'\]"),
        (lambda df: df.assign(shoe_size=42), r"unexpected column\(s\) \['shoe_size'\]"),
        (
            lambda df: df.assign(tenure_months=df["tenure_months"].astype(str)),
            r"column 'tenure_months' is string, declared int",
        ),
    ],
    ids=["missing", "extra", "retyped"],
)
def test_schema_drift_is_refused_naming_file_and_column(
    spark: SparkSession,
    fresh_settings: Settings,
    churn: UseCase,
    sample: pd.DataFrame,
    change,
    message: str,
) -> None:
    path = _write(fresh_settings, churn, change(sample))
    with pytest.raises(SourceSchemaError, match=message) as raised:
        ingest.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    assert path in str(raised.value)
    assert not tables.exists(fresh_settings, churn.raw_table)  # nothing written


def test_corrupt_file_is_refused(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    folder = landing_dir(fresh_settings, churn, RUN_DATE)
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceSchemaError, match=r"part-0\.parquet: not a readable Parquet file"):
        ingest.run(RunContext(fresh_settings, churn, RUN_DATE, spark))


def test_reingest_replaces_only_its_run_date(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase, sample: pd.DataFrame
) -> None:
    ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
    _write(fresh_settings, churn, sample)
    first = ingest.run(ctx)
    other_day = RunContext(fresh_settings, churn, date(2026, 11, 3), spark)
    folder = landing_dir(fresh_settings, churn, other_day.run_date)
    folder.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(sample.head(10), preserve_index=False),
        folder / "a.parquet",
        coerce_timestamps="us",
    )
    ingest.run(other_day)
    again = ingest.run(ctx)
    raw = tables.read(spark, fresh_settings, churn.raw_table)
    counts = {r.run_date: r["count"] for r in raw.groupBy("run_date").count().collect()}
    assert counts == {RUN_DATE: len(sample), other_day.run_date: 10}
    assert first["rows"] == again["rows"] == len(sample)
    source_files = {r._source_file for r in raw.select("_source_file").distinct().collect()}
    assert source_files == {"part-0.parquet", "a.parquet"}
