"""Ingest from CSV, JSON lines and an existing Delta table: the declared schema is enforced at read,
and a source that does not match fails naming the file (or table) and the column, writing nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.catalog import BAD_VALUES
from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.data.sources import SPARK_TYPES, SourceSchemaError
from prescore.demo.datagen import churn_chunks, landing_dir
from prescore.platform import tables
from prescore.stages import clean, ingest

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


# ---------------------------------------------------------------- tolerant sources (issue 18)

BAD_TENURE, BAD_CHARGE = (3, 7), 25  # rows of the sample given text that does not parse


def messy_csv(ctx: RunContext, sample: pd.DataFrame) -> list[Path]:
    """Two CSV files as R's write.csv writes them: an undeclared column and unnamed row names,
    `NA` for every missing value, and three numbers that do not parse (rows 4 and 8 of part-0,
    row 6 of part-1)."""
    frame = as_text(sample).assign(shoe_size=42)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame["monthly_charges"] = frame["monthly_charges"].astype(object)
    frame.loc[list(BAD_TENURE), "tenure_months"] = "abc"
    frame.loc[BAD_CHARGE, "monthly_charges"] = "12,5"
    frame.loc[1, "email"] = None
    folder = landing_dir(ctx.settings, ctx.usecase, RUN_DATE)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "part-0.csv", folder / "part-1.csv"]
    frame[:20].to_csv(paths[0], na_rep="NA")  # row names first, headed "", as R writes them
    frame[20:].to_csv(paths[1], na_rep="NA")
    return paths


def tolerant(ctx: RunContext, **fields: object) -> RunContext:
    source = ctx.usecase.source.model_copy(update={"columns": "ignore_undeclared", **fields})
    cleaning = ctx.usecase.cleaning.model_copy(update={"max_quarantined_fraction": 0.5})
    usecase = ctx.usecase.model_copy(update={"source": source, "cleaning": cleaning})
    return RunContext(ctx.settings, usecase, RUN_DATE, ctx.spark)


def test_unparseable_values_are_quarantined_naming_column_value_and_file(
    spark, fresh_settings, churn, sample
):
    ctx = tolerant(context(spark, fresh_settings, churn, "csv"), on_bad_value="quarantine")
    messy_csv(ctx, sample)

    ingested = ingest.run(ctx)
    summary = clean.run(ctx)

    raw = tables.read_run(spark, fresh_settings, ctx.usecase.raw_table, RUN_DATE)
    assert ingested["rows"] == len(sample) == raw.count() == summary["raw_rows"]
    assert "shoe_size" not in raw.columns
    by_id = {r.customer_id: r for r in raw.collect()}
    ids = sample["customer_id"]
    assert by_id[ids[1]].email is None and by_id[ids[1]][BAD_VALUES] is None  # NA is missing
    missing = sample["monthly_charges"].isna() & (sample.index != BAD_CHARGE)
    assert raw.where(f"monthly_charges is null and {BAD_VALUES} is null").count() == missing.sum()

    quarantined = tables.read_run(spark, fresh_settings, ctx.usecase.quarantine_table, RUN_DATE)
    reasons = {json.loads(r.raw_row)["customer_id"]: r.reason for r in quarantined.collect()}
    assert {i: reasons[ids[i]] for i in [*BAD_TENURE, BAD_CHARGE]} == {
        3: "column 'tenure_months' value 'abc' is not int (file part-0.csv)",
        7: "column 'tenure_months' value 'abc' is not int (file part-0.csv)",
        25: "column 'monthly_charges' value '12,5' is not double (file part-1.csv)",
    }
    assert sum("is not" in reason for reason in reasons.values()) == 3
    clean_rows = tables.read_run(spark, fresh_settings, ctx.usecase.clean_table, RUN_DATE)
    assert clean_rows.count() + quarantined.count() == len(sample)
    assert BAD_VALUES not in clean_rows.columns
    assert clean_rows.where(F.col("customer_id").isin([ids[i] for i in BAD_TENURE])).count() == 0


def test_unparseable_value_fails_naming_file_row_column_value_and_count(
    spark, fresh_settings, churn, sample
):
    ctx = tolerant(context(spark, fresh_settings, churn, "csv"))
    messy_csv(ctx, sample)

    with pytest.raises(SourceSchemaError) as caught:
        ingest.run(ctx)

    assert str(caught.value).startswith(
        f"{landing_dir(fresh_settings, ctx.usecase, RUN_DATE) / 'part-0.csv'}: row 4 after the "
        "header: column 'tenure_months' value 'abc' is not int; 3 row(s) in 2 file(s) have a value"
    )
    assert not tables.exists(fresh_settings, ctx.usecase.raw_table)


def test_json_bad_value_names_its_record(spark, fresh_settings, churn, sample):
    ctx = context(spark, fresh_settings, churn, "json")
    frame = as_text(sample[:5]).assign(total_charges=["1", "2", "x", "4", "5"])
    write_text(ctx, [frame])

    with pytest.raises(
        SourceSchemaError,
        match=r"record 3: column 'total_charges' value 'x' is not double; 1 row\(s\) in 1 file",
    ):
        ingest.run(ctx)
    assert not tables.exists(fresh_settings, ctx.usecase.raw_table)


def test_csv_columns_are_read_by_name_whatever_their_order(spark, fresh_settings, churn, sample):
    ctx = context(spark, fresh_settings, churn, "csv")
    first, second = as_text(sample[:20]), as_text(sample[20:])
    write_text(ctx, [first, second[list(reversed(second.columns))]])

    ingest.run(ctx)

    raw = tables.read_run(spark, fresh_settings, ctx.usecase.raw_table, RUN_DATE)
    got = sorted((r.customer_id, r.tenure_months, r.plan) for r in raw.collect())
    columns = [sample["customer_id"], sample["tenure_months"], sample["plan"]]
    assert got == sorted(zip(*columns, strict=True))


def test_raw_table_written_before_bad_values_existed_gains_the_column(
    spark, fresh_settings, churn, sample
):
    ctx = context(spark, fresh_settings, churn, "csv")
    declared = ", ".join(f"{c} {SPARK_TYPES[t]}" for c, t in churn.source.schema_.items())
    old = spark.createDataFrame(
        [("old", *[None] * (len(churn.source.schema_) - 1), RUN_DATE - timedelta(1), "f", None)],
        f"{declared}, run_date date, _source_file string, _ingested_at timestamp",
    )
    tables.replace_run(old, fresh_settings, ctx.usecase.raw_table, RUN_DATE - timedelta(1))
    write_text(ctx, [as_text(sample)])

    ingest.run(ctx)

    raw = tables.read(spark, fresh_settings, ctx.usecase.raw_table)
    assert raw.count() == len(sample) + 1
    assert raw.where(f"{BAD_VALUES} is null").count() == len(sample) + 1
