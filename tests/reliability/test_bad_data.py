"""Reliability under bad input, on a copy of the session's whole-flow state (day 1 published): the
next day's landing files are broken on purpose, and the flow runs again on them (without train).

Case 4: a source that does not match (drifted schema, empty, truncated or corrupt file) fails
naming the file and column, keeps raw as it was, and publishes nothing.
Case 5: bad rows under the quarantine limit are quarantined and the rest published; over it, or
with a failed `error` expectation, the run fails and the published pointer does not move.
Case 6: duplicate keys in a source are deduplicated by the rule; published keys are unique.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.context import RunContext
from prescore.demo.datagen import landing_dir
from prescore.flow import run_flow
from prescore.platform import tables
from prescore.serving import publish_log, snapshot
from support import copy_of_flow

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
NO_TRAIN = ("ingest", "validate", "clean", "score", "publish")


def day_one_landing(ctx: RunContext) -> pd.DataFrame:
    """Day 1's landing rows, without its duplicates and defects: a clean start to break."""
    frame = pd.read_parquet(landing_dir(ctx.settings, ctx.usecase, ctx.run_date - timedelta(1)))
    frame = frame.dropna(subset=["customer_id", "monthly_charges", "churned"])
    frame = frame[frame["tenure_months"].between(0, 600)]
    return frame.drop_duplicates("customer_id").reset_index(drop=True)


def land(ctx: RunContext, frame: pd.DataFrame, name: str = "part-0.parquet") -> Path:
    folder = landing_dir(ctx.settings, ctx.usecase, ctx.run_date)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, coerce_timestamps="us")
    return path


class Published:
    """What readers see and what the raw zone holds, to compare before and after a failed run."""

    def __init__(self, spark: SparkSession, ctx: RunContext) -> None:
        settings, usecase = ctx.settings, ctx.usecase
        self.link = os.readlink(snapshot.current_path(settings, usecase))
        self.log_rows = tables.read(spark, settings, publish_log.PUBLISH_LOG).count()
        self.raw_version = tables.latest_version(settings, usecase.raw_table)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Published) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Published({vars(self)})"


def has_partition(spark: SparkSession, ctx: RunContext, table: str) -> bool:
    rows = tables.read(spark, ctx.settings, table).where(F.col("run_date") == ctx.run_date)
    return rows.limit(1).count() > 0


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def emptied(path: Path) -> None:
    """The same file with its schema and no rows."""
    pq.write_table(pq.read_table(path).slice(0, 0), path)


BROKEN_SOURCES = {
    "missing-column": (lambda df: df.drop(columns=["email"]), None, r"email"),
    "extra-column": (lambda df: df.assign(shoe_size=42), None, r"shoe_size"),
    "retyped-column": (
        lambda df: df.assign(tenure_months=df["tenure_months"].astype(str)),
        None,
        r"tenure_months",
    ),
    "empty-file": (lambda df: df, emptied, r"no rows"),
    "truncated-parquet": (lambda df: df, truncated, r"not a readable Parquet file"),
}


@pytest.mark.parametrize("broken", list(BROKEN_SOURCES))
def test_broken_source_fails_naming_file_and_column_and_publishes_nothing(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path: Path, broken: str
) -> None:
    """Case 4."""
    ctx = copy_of_flow(flow, tmp_path / "state", days_later=1)
    change, damage, names = BROKEN_SOURCES[broken]
    path = land(ctx, change(day_one_landing(ctx)))
    if damage:
        damage(path)
    before = Published(spark, ctx)

    with pytest.raises(Exception, match=names) as raised:
        run_flow(ctx, NO_TRAIN)

    assert str(path) in str(raised.value)
    assert Published(spark, ctx) == before
    assert not has_partition(spark, ctx, ctx.usecase.raw_table)


def with_bad_rows(frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """`share` of the rows get a tenure outside the valid range (a row rule: quarantined)."""
    bad = frame.sample(frac=share, random_state=1).index
    return frame.assign(tenure_months=frame["tenure_months"].where(~frame.index.isin(bad), -5))


def with_older_duplicates(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """n keys twice: the copy is an hour older and has a different monthly charge."""
    older = frame.head(n).assign(
        updated_at=frame["updated_at"].head(n) - pd.Timedelta(hours=1),
        monthly_charges=frame["monthly_charges"].head(n) + 11.0,
    )
    return pd.concat([frame, older], ignore_index=True)


@pytest.fixture(scope="module")
def messy_day(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunContext, pd.DataFrame, dict[str, Any]]:
    """Day 2 with 2% out-of-range rows (under the 5% limit) and 20 keys duplicated, run through
    to publish: (context, landing rows, stage summaries)."""
    ctx = copy_of_flow(flow, tmp_path_factory.mktemp("messy") / "state", days_later=1)
    frame = with_older_duplicates(with_bad_rows(day_one_landing(ctx), 0.02), 20)
    land(ctx, frame)
    return ctx, frame, run_flow(ctx, NO_TRAIN)


def test_bad_rows_under_the_limit_are_quarantined_and_the_rest_published(
    spark: SparkSession, messy_day: tuple[RunContext, pd.DataFrame, dict[str, Any]]
) -> None:
    """Case 5, under the limit: clean + quarantined = raw, and every clean key is published."""
    ctx, frame, summary = messy_day
    usecase = ctx.usecase
    raw = tables.read_run(spark, ctx.settings, usecase.raw_table, ctx.run_date).count()
    clean = tables.read_run(spark, ctx.settings, usecase.clean_table, ctx.run_date)
    quarantined = tables.read_run(spark, ctx.settings, usecase.quarantine_table, ctx.run_date)
    assert raw == len(frame)
    assert clean.count() + quarantined.count() == raw
    assert summary["clean"]["quarantined_invalid"] == (frame["tenure_months"] < 0).sum()
    assert summary["publish"]["rows"] == clean.count()
    assert os.readlink(snapshot.current_path(ctx.settings, usecase)).startswith(
        f"snapshots/{ctx.run_date}"
    )


def test_duplicate_keys_keep_the_latest_row_and_publish_unique_keys(
    spark: SparkSession, messy_day: tuple[RunContext, pd.DataFrame, dict[str, Any]]
) -> None:
    """Case 6: the older copy of each duplicated key is quarantined as a duplicate; the clean row
    is the latest; each key is published once."""
    ctx, frame, summary = messy_day
    usecase = ctx.usecase
    assert summary["clean"]["quarantined_duplicates"] == 20
    duplicated = frame[frame.duplicated("customer_id", keep=False)]
    latest = duplicated.sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    clean = tables.read_run(spark, ctx.settings, usecase.clean_table, ctx.run_date)
    kept = {
        r.customer_id: r.updated_at
        for r in clean.where(F.col("customer_id").isin(list(latest["customer_id"]))).collect()
    }
    assert kept == {
        k: t.to_pydatetime()
        for k, t in zip(latest["customer_id"], latest["updated_at"], strict=True)
    }
    predictions = tables.read_run(spark, ctx.settings, usecase.predictions_table, ctx.run_date)
    assert predictions.count() == predictions.select("customer_id").distinct().count()


def test_bad_rows_over_the_limit_fail_the_run_and_keep_the_published_pointer(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path: Path
) -> None:
    """Case 5, over the limit: clean fails naming the share and the limit; the bad rows are in
    quarantine for inspection; no clean rows, no predictions, nothing published for the day."""
    ctx = copy_of_flow(flow, tmp_path / "state", days_later=1)
    frame = with_bad_rows(day_one_landing(ctx), 0.2)
    land(ctx, frame)
    before = Published(spark, ctx)
    with pytest.raises(Exception, match=r"over the limit of 5\.0%"):
        run_flow(ctx, NO_TRAIN)
    quarantined = tables.read_run(spark, ctx.settings, ctx.usecase.quarantine_table, ctx.run_date)
    assert quarantined.count() == (frame["tenure_months"] < 0).sum()
    assert not has_partition(spark, ctx, ctx.usecase.clean_table)
    assert not has_partition(spark, ctx, ctx.usecase.predictions_table)
    assert os.readlink(snapshot.current_path(ctx.settings, ctx.usecase)) == before.link
    assert tables.read(spark, ctx.settings, publish_log.PUBLISH_LOG).count() == before.log_rows


def test_failed_error_expectation_stops_the_run_before_clean(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path: Path
) -> None:
    """Case 5, an `error` expectation fails (10% of labels missing): validate fails naming it;
    nothing is cleaned, scored or published for the day."""
    ctx = copy_of_flow(flow, tmp_path / "state", days_later=1)
    frame = day_one_landing(ctx)
    frame["churned"] = frame["churned"].astype("Int32").mask(frame.index % 10 == 0)
    land(ctx, frame)
    before = Published(spark, ctx)
    with pytest.raises(Exception, match=r"expect_column_values_to_not_be_null.*churned"):
        run_flow(ctx, NO_TRAIN)
    assert not has_partition(spark, ctx, ctx.usecase.clean_table)
    assert not has_partition(spark, ctx, ctx.usecase.predictions_table)
    assert os.readlink(snapshot.current_path(ctx.settings, ctx.usecase)) == before.link
    assert tables.read(spark, ctx.settings, publish_log.PUBLISH_LOG).count() == before.log_rows
