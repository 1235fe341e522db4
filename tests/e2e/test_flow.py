"""The whole flow on 1k generated rows, in one Spark session: what make demo does, minus Airflow."""

from __future__ import annotations

from datetime import date

import mlflow.xgboost
import numpy as np
import pytest
from pyspark.sql import SparkSession

from prescore import registry, tables
from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.datagen import write_landing
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
