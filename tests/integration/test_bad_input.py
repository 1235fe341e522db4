"""Bad input stops score or publish with an error naming it; the published version stays served."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest
import xgboost
from pyspark.sql import SparkSession

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import registry, tables
from prescore.platform.registry import ModelNotFoundError
from prescore.platform.tables import TableNotFoundError
from prescore.scoring.predict import MissingColumnsError
from prescore.serving import publish_log, snapshot
from prescore.serving.client import Scores
from prescore.stages import publish, score
from support import register_package

pytestmark = pytest.mark.integration
DAY1, DAY2 = date(2026, 11, 5), date(2026, 11, 6)
DROPPED = "support_calls"
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, model_run_id string, "
    "features_version bigint, scored_at timestamp, valid_until timestamp, run_date date"
)


def register_champion(settings: Settings, usecase: UseCase) -> None:
    """A small real booster over the use case's features, registered as @champion."""
    x = np.random.default_rng(0).random((100, len(usecase.features)), dtype=np.float32)
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, (x[:, 0] > 0.5).astype(int))
    register_package(settings, usecase, model.get_booster(), alias=registry.CHAMPION)


@pytest.fixture(scope="module")
def served(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
):
    """DAY1 published from a clean table that lacks one feature column; a champion registered."""
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("bad")})
    features = [f for f in churn.features if f != DROPPED]
    schema = ", ".join(["customer_id string", *(f"{f} double" for f in features), "run_date date"])
    clean = spark.createDataFrame([(k, *[1.0] * len(features), DAY1) for k in "ab"], schema)
    clean_version = tables.replace_run(clean, state, churn.clean_table, DAY1)
    stamp, until = datetime(2026, 11, 5, 6), datetime(2026, 11, 12)
    rows = [
        (k, s, "m", "1", "r", clean_version, stamp, until, DAY1)
        for k, s in (("a", 0.1), ("b", 0.2))
    ]
    tables.replace_run(
        spark.createDataFrame(rows, PRED_SCHEMA), state, churn.predictions_table, DAY1
    )
    publish.run(RunContext(state, churn, DAY1, spark))
    register_champion(state, churn)
    return state, snapshot.current_path(state, churn).resolve()


def assert_still_served(spark: SparkSession, state: Settings, churn: UseCase, built) -> None:
    assert snapshot.current_path(state, churn).resolve() == built
    assert tables.read(spark, state, publish_log.PUBLISH_LOG).count() == 1
    assert tables.latest_version(state, churn.predictions_table) == 0
    assert Scores(churn, state).get("a").score == pytest.approx(0.1)


def test_missing_champion_alias_is_named_and_nothing_is_scored(
    spark: SparkSession, churn: UseCase, served
) -> None:
    state, snapshot = served
    unregistered = state.model_copy(
        update={"mlflow": state.mlflow.model_copy(update={"registry_prefix": "never-trained"})}
    )
    with pytest.raises(
        ModelNotFoundError, match=r"'never-trained-churn' has no version with alias @champion"
    ):
        score.run(RunContext(unregistered, churn, DAY1, spark))
    assert_still_served(spark, state, churn, snapshot)


def test_missing_feature_column_is_named_and_nothing_is_scored(
    spark: SparkSession, churn: UseCase, served
) -> None:
    state, snapshot = served
    with pytest.raises(
        MissingColumnsError,
        match=rf"clean_customers v0: columns \['{DROPPED}'\] are keys or features of use case 'churn'",
    ):
        score.run(RunContext(state, churn, DAY1, spark))
    assert_still_served(spark, state, churn, snapshot)


@pytest.mark.parametrize(
    ("stage", "table"),
    [(score, "clean_customers"), (publish, "pred_churn")],
    ids=["score", "publish"],
)
def test_empty_population_is_named_and_nothing_is_published(
    spark: SparkSession, churn: UseCase, served, stage, table: str
) -> None:
    state, snapshot = served
    with pytest.raises(TableNotFoundError, match=rf"'{table}' has no rows for run_date {DAY2}"):
        stage.run(RunContext(state, churn, DAY2, spark))
    assert_still_served(spark, state, churn, snapshot)
