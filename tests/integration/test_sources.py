"""Ingest from CSV, JSON lines and an existing Delta table: the declared schema is enforced at read,
and a source that does not match fails naming the file (or table) and the column, writing nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.data.sources import SourceSchemaError
from prescore.demo.datagen import churn_chunks, landing_dir
from prescore.platform import tables
from prescore.stages import ingest

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 3)


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return next(churn_chunks(40, RUN_DATE, seed=3))


def context(
    spark: SparkSession, settings: Settings, churn: UseCase, fmt: str, path: str = "src"
) -> RunContext:
    source = churn.source.model_copy(update={"format": fmt, "path": path})
    usecase = churn.model_copy(update={"source": source, "entity": f"src_{fmt}"})
    return RunContext(settings, usecase, RUN_DATE, spark)


def write_text(ctx: RunContext, frames: list[pd.DataFrame]) -> list[Path]:
    folder = landing_dir(ctx.settings, ctx.usecase, RUN_DATE)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, frame in enumerate(frames):
        path = folder / f"part-{index}.{ctx.usecase.source.format}"
        if ctx.usecase.source.format == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")
        paths.append(path)
    return paths


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as ISO text, as a CSV or JSON export holds them."""
    return frame.assign(signup_date=frame["signup_date"].astype(str))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_text_sources_are_ingested_with_declared_types(spark, fresh_settings, churn, sample, fmt):
    ctx = context(spark, fresh_settings, churn, fmt)
    write_text(ctx, [as_text(sample[:20]), as_text(sample[20:])])

    summary = ingest.run(ctx)

    raw = tables.read_run(spark, fresh_settings, ctx.usecase.raw_table, RUN_DATE)
    assert summary["rows"] == len(sample) == raw.count()
    assert dict(raw.dtypes)["tenure_months"] == "int" and dict(raw.dtypes)["signup_date"] == "date"
    assert {r._source_file for r in raw.select("_source_file").distinct().collect()} == {
        f"part-0.{fmt}",
        f"part-1.{fmt}",
    }


BAD: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "missing": (lambda df: df.drop(columns=["email"]), r"missing column\(s\) \['email'\]"),
    "extra": (lambda df: df.assign(shoe_size=42), r"unexpected column\(s\) \['shoe_size'\]"),
    "retyped": (
        lambda df: df.assign(tenure_months=["many", *list(df["tenure_months"][1:])]),
        r"column 'tenure_months' value 'many' is not int; 1 row\(s\) in 2 file\(s\)",
    ),
}


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_text_file_is_refused_naming_file_and_column(
    spark, fresh_settings, churn, sample, fmt, case
):
    ctx = context(spark, fresh_settings, churn, fmt)
    change, message = BAD[case]
    good, bad = write_text(ctx, [as_text(sample[:20]), change(as_text(sample[20:]))])

    with pytest.raises(SourceSchemaError, match=message) as caught:
        ingest.run(ctx)

    assert bad.name in str(caught.value) and good.name not in str(caught.value)
    assert not tables.exists(fresh_settings, ctx.usecase.raw_table)


@pytest.mark.parametrize(("content", "message"), [("", "empty file"), (None, "header only")])
def test_empty_csv_is_refused(spark, fresh_settings, churn, sample, content, message):
    ctx = context(spark, fresh_settings, churn, "csv")
    (path,) = write_text(ctx, [as_text(sample[:0])])
    if content is not None:
        path.write_text(content)

    with pytest.raises(SourceSchemaError, match=message):
        ingest.run(ctx)
    assert not tables.exists(fresh_settings, ctx.usecase.raw_table)


def test_delta_table_source_is_read_at_one_version(spark, fresh_settings, churn, sample, tmp_path):
    path = tmp_path / "customers_delta"
    frame = spark.createDataFrame(sample.astype(object).where(sample.notna(), None))
    for column, kind in churn.source.schema_.items():
        frame = frame.withColumn(column, frame[column].cast({"long": "bigint"}.get(kind, kind)))
    frame.write.format("delta").save(str(path))
    ctx = context(spark, fresh_settings, churn, "delta", path=str(path))

    summary = ingest.run(ctx)

    assert summary["rows"] == len(sample)
    assert summary["read"] == {str(path): 0}
    raw = tables.read_run(spark, fresh_settings, ctx.usecase.raw_table, RUN_DATE)
    assert {r._source_file for r in raw.select("_source_file").distinct().collect()} == {
        f"{path}@v0"
    }


def test_retyped_delta_source_is_refused(spark, fresh_settings, churn, sample, tmp_path):
    path = tmp_path / "customers_delta_bad"
    frame = spark.createDataFrame(sample.astype(object).where(sample.notna(), None))
    frame.withColumn("tenure_months", frame["tenure_months"].cast("string")).write.format(
        "delta"
    ).save(str(path))
    ctx = context(spark, fresh_settings, churn, "delta", path=str(path))

    with pytest.raises(
        SourceSchemaError, match=r"column 'tenure_months' is string, declared int"
    ) as caught:
        ingest.run(ctx)
    assert str(path) in str(caught.value)
    assert not tables.exists(fresh_settings, ctx.usecase.raw_table)
