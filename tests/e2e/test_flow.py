"""The whole flow on 1k generated rows, in one Spark session: what make demo does, minus Airflow."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore import registry, tables
from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.datagen import landing_dir, write_landing
from prescore.features import as_model_input
from prescore.flow import run_flow
from prescore.lookup import Scores

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RUN_DATE = date(2026, 11, 1)


@pytest.fixture(scope="module")
def flow(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
):
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("e2e")})
    write_landing(state, churn, RUN_DATE, rows=1000)
    ctx = RunContext(state, churn, RUN_DATE, spark)
    return ctx, run_flow(ctx)


def _keys(spark: SparkSession, ctx: RunContext, table: str) -> tuple[int, int]:
    df = tables.read_run(spark, ctx.settings, table, RUN_DATE)
    return df.count(), df.select(*ctx.usecase.keys).distinct().count()


def test_every_raw_row_is_clean_or_quarantined(spark: SparkSession, flow) -> None:
    ctx, summary = flow
    raw, _ = _keys(spark, ctx, ctx.usecase.raw_table)
    clean, clean_keys = _keys(spark, ctx, ctx.usecase.clean_table)
    quarantined = tables.read_run(
        spark, ctx.settings, ctx.usecase.quarantine_table, RUN_DATE
    ).count()
    assert raw > 1000  # the generator adds duplicates on top of the 1000 customers
    assert clean + quarantined == raw
    assert clean == clean_keys
    assert (
        summary["clean"]["quarantined_invalid"] > 0
        and summary["clean"]["quarantined_duplicates"] > 0
    )


def test_looked_up_score_equals_the_models_prediction(spark: SparkSession, flow) -> None:
    ctx, _ = flow
    champion = registry.resolve_alias(ctx.settings, ctx.usecase)
    booster = mlflow.xgboost.load_model(champion.uri)
    clean = tables.read_run(spark, ctx.settings, ctx.usecase.clean_table, RUN_DATE)
    features = ctx.usecase.features
    rows = as_model_input(clean, features=features).orderBy("customer_id").limit(5).collect()
    scores = Scores(ctx.usecase, ctx.settings)
    for row in rows:
        expected = booster.inplace_predict(
            np.array([[row[f] for f in features]], dtype=np.float32)
        )[0]
        found = scores.get(row.customer_id)
        assert found.score == pytest.approx(float(expected), abs=1e-6)
        assert found.model_version == champion.version
        assert found.model_name == champion.name


def test_missing_key_is_reported_missing(flow) -> None:
    ctx, _ = flow
    found = Scores(ctx.usecase, ctx.settings).get("no-such-customer")
    assert (found.score, found.freshness) == (None, "missing")


def test_every_prediction_row_carries_lineage(spark: SparkSession, flow) -> None:
    ctx, summary = flow
    preds = tables.read_run(spark, ctx.settings, ctx.usecase.predictions_table, RUN_DATE)
    lineage = (
        preds.select("model_name", "model_version", "features_version", "scored_at")
        .distinct()
        .collect()
    )
    assert len(lineage) == 1
    assert lineage[0].model_version == summary["train"]["version"]
    assert lineage[0].features_version == summary["clean"]["clean_version"]


def test_rerunning_a_date_replaces_and_never_duplicates(spark: SparkSession, flow) -> None:
    ctx, _ = flow
    tables_to_check = [
        ctx.usecase.raw_table,
        ctx.usecase.clean_table,
        ctx.usecase.predictions_table,
    ]
    before = {t: _keys(spark, ctx, t) for t in tables_to_check}
    run_flow(ctx)
    after = {t: _keys(spark, ctx, t) for t in tables_to_check}
    assert after == before
    rows, distinct = after[ctx.usecase.predictions_table]
    assert rows == distinct
    assert Scores(ctx.usecase, ctx.settings).snapshot.exists()


def _table_text(spark: SparkSession, settings: Settings, table: str) -> str:
    rows = tables.read(spark, settings, table).select(F.to_json(F.struct("*"))).collect()
    return "\n".join(r[0] for r in rows)


def _snapshot_text(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        return str(con.execute("select * from predictions").fetchall())


def test_no_raw_pii_value_downstream_of_raw(spark: SparkSession, flow) -> None:
    """Raw and quarantine keep source rows as they came; nothing written after them holds PII.

    Reads back every row of the clean, validation, predictions and publish_log tables and of the
    serving snapshots, and scans the MLflow store (database, params, tags, artifacts) byte by byte,
    for the landing values of the PII columns.
    """
    ctx, _ = flow
    settings, usecase = ctx.settings, ctx.usecase
    landing = pd.read_parquet(landing_dir(settings, usecase, RUN_DATE))
    secrets = {str(v) for c in usecase.pii for v in landing[c].dropna().head(200)}
    downstream = [
        usecase.clean_table,
        f"validation_{usecase.entity}",
        usecase.predictions_table,
        "publish_log",
    ]
    texts = {t: _table_text(spark, settings, t) for t in downstream}
    texts |= {
        p.name: _snapshot_text(p) for p in (settings.serving_dir / usecase.name).rglob("*.duckdb")
    }
    mlflow_files = [p for p in (settings.state_dir / "mlflow").rglob("*") if p.is_file()]
    texts |= {str(p): p.read_bytes().decode("latin-1") for p in mlflow_files}
    assert len(texts) > 10
    leaks = [(name, s) for name, text in texts.items() for s in secrets if s in text]
    assert leaks == []
    # The control: the same search finds them in raw, so the search itself works.
    raw = _table_text(spark, settings, usecase.raw_table)
    assert all(s in raw for s in secrets)
