"""Shadow scoring: @challenger scored beside @champion on the same keys, into shadow_<usecase>."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import xgboost
from pyspark.sql import DataFrame, SparkSession

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import registry, tables
from prescore.stages import score
from support import register_package

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 5)
ROWS = 300


def feature_matrix(usecase: UseCase, seed: int, rows: int = ROWS) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, len(usecase.features)), dtype=np.float32)


def register_model(
    settings: Settings, usecase: UseCase, *, depth: int, alias: str
) -> registry.ModelRef:
    """Train a small real booster (label: first feature > 0.5) and register it under `alias`."""
    x = feature_matrix(usecase, seed=depth)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=depth, random_state=depth)
    model.fit(x, (x[:, 0] + 0.1 * x[:, 1] > 0.5).astype(int))
    return register_package(settings, usecase, model.get_booster(), alias=alias)


def clean_frame(spark: SparkSession, usecase: UseCase) -> DataFrame:
    x = feature_matrix(usecase, seed=99)
    rows = [(f"C{i:05d}", *map(float, x[i]), RUN_DATE) for i in range(ROWS)]
    schema = ", ".join(
        ["customer_id string", *(f"{f} double" for f in usecase.features), "run_date date"]
    )
    return spark.createDataFrame(rows, schema)


@pytest.fixture(scope="module")
def shadow_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("shadow")})


@pytest.fixture(scope="module")
def scored_twice(spark: SparkSession, shadow_settings: Settings, churn: UseCase):
    """Scored once with only @champion, then again after a @challenger was registered."""
    fresh_settings = shadow_settings
    spark.conf.set(
        score.ARROW_BATCH, "10000"
    )  # the stage sets its own batch size, then puts this back
    tables.replace_run(clean_frame(spark, churn), fresh_settings, churn.clean_table, RUN_DATE)
    champion = register_model(fresh_settings, churn, depth=2, alias=registry.CHAMPION)
    first = score.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    challenger = register_model(fresh_settings, churn, depth=4, alias=registry.CHALLENGER)
    second = score.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    return champion, challenger, first, second


def test_no_challenger_writes_no_shadow_rows(
    spark: SparkSession, shadow_settings: Settings, churn: UseCase, scored_twice
) -> None:
    *_, first, second = scored_twice
    assert "challenger_version" not in first
    # the first run had only a champion: the shadow table's only commit is the second run's
    assert second["shadow_version"] == 0
    history = tables.read(spark, shadow_settings, churn.shadow_table)
    assert history.count() == ROWS


def test_challenger_is_scored_on_the_same_keys_beside_the_champion(
    spark: SparkSession, shadow_settings: Settings, churn: UseCase, scored_twice
) -> None:
    champion, challenger, _, summary = scored_twice
    assert summary["challenger_version"] == challenger.version == "2"
    shadow = tables.read_run(spark, shadow_settings, churn.shadow_table, RUN_DATE).toPandas()
    preds = tables.read_run(spark, shadow_settings, churn.predictions_table, RUN_DATE).toPandas()
    assert len(shadow) == ROWS == shadow["customer_id"].nunique()
    assert set(shadow["champion_version"]) == {champion.version}
    assert set(shadow["challenger_version"]) == {challenger.version}
    assert set(preds["model_version"]) == {champion.version}  # what is served stays the champion's

    joined = shadow.merge(preds, on="customer_id")
    assert np.allclose(joined["champion_score"], joined["score"])
    x = feature_matrix(churn, seed=99)
    expected = registry.load_package(challenger).booster.inplace_predict(x)
    ordered = shadow.assign(i=shadow["customer_id"].str[1:].astype(int)).sort_values("i")
    assert np.allclose(ordered["challenger_score"], expected, atol=1e-6)
    assert not np.allclose(ordered["challenger_score"], ordered["champion_score"])


def test_challenger_equal_to_champion_is_not_shadowed(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    tables.replace_run(clean_frame(spark, churn), fresh_settings, churn.clean_table, RUN_DATE)
    champion = register_model(fresh_settings, churn, depth=2, alias=registry.CHAMPION)
    registry.set_alias(fresh_settings, champion, registry.CHALLENGER)
    summary = score.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    assert "challenger_version" not in summary
    assert not tables.exists(fresh_settings, churn.shadow_table)


def test_score_stage_puts_the_sessions_arrow_batch_size_back(
    spark: SparkSession, scored_twice
) -> None:
    assert spark.conf.get(score.ARROW_BATCH) == "10000"
