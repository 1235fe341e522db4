"""Scores computed on demand follow @champion: a promotion or a rollback swaps the model package
without a restart; what cannot be computed is refused naming why."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost

from prescore.config import Settings, UseCase, load_usecase
from prescore.platform import registry
from prescore.serving.client import Scores
from prescore.serving.compute import ComputeRefusedError
from support import register_package

pytestmark = pytest.mark.integration


def booster(usecase: UseCase, depth: int) -> xgboost.Booster:
    x = np.random.default_rng(depth).random((200, len(usecase.features)), dtype=np.float32)
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=depth, random_state=depth)
    return model.fit(x, (x[:, 0] + 0.2 * x[:, depth] > 0.6).astype(int)).get_booster()


def test_computed_scores_follow_the_champion_as_it_moves(
    settings: Settings, churn: UseCase, tmp_path
) -> None:
    serve = settings.serve.model_copy(update={"model_refresh_seconds": 0})
    state = settings.model_copy(update={"state_dir": tmp_path, "serve": serve})
    first, second = booster(churn, 2), booster(churn, 4)
    rows = [{f: (i + 1) / 10 for f in churn.features} for i in range(8)]
    matrix = np.array([[row[f] for f in churn.features] for row in rows], dtype=np.float32)
    v1 = register_package(state, churn, first, alias=registry.CHAMPION)
    client = Scores(churn, state)

    before = client.compute(rows)
    v2 = register_package(state, churn, second, alias=registry.CHAMPION)  # promoted
    after = client.compute(rows)
    registry.set_alias(state, v1, registry.CHAMPION)  # rolled back
    back = client.compute(rows)

    for answers, version, model in ((before, v1, first), (after, v2, second), (back, v1, first)):
        assert {(s.model_version, s.source, s.freshness) for s in answers} == {
            (version.version, "computed", None)
        }
        expected = model.inplace_predict(matrix)
        np.testing.assert_allclose([s.score for s in answers], expected, rtol=0, atol=1e-6)
    assert not np.allclose([s.score for s in before], [s.score for s in after])


def test_a_forecast_is_never_computed_on_demand(settings: Settings, tmp_path) -> None:
    state = settings.model_copy(update={"state_dir": tmp_path})
    forecast = load_usecase("forecast", state)
    with pytest.raises(ComputeRefusedError, match="precomputed only"):
        Scores(forecast, state).compute([{f: 1 for f in forecast.features}])


def test_no_champion_is_named(settings: Settings, churn: UseCase, tmp_path) -> None:
    state = settings.model_copy(update={"state_dir": tmp_path})
    with pytest.raises(registry.ModelNotFoundError, match="@champion"):
        Scores(churn, state).compute([{f: 0.1 for f in churn.features}])
