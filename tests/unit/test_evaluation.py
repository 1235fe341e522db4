"""Test-split metrics, the promotion gate's decision, and the model settings that drive them."""

from __future__ import annotations

import numpy as np
import pytest

from prescore.config import ModelSettings, PromotionSettings, TuningSettings
from prescore.training.evaluation import binary_metrics, is_better, regression_metrics
from prescore.training.promotion import decide

pytestmark = pytest.mark.unit


def test_binary_metrics_at_the_threshold() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    found = binary_metrics(y, p, threshold=0.5)
    assert found["auc"] == pytest.approx(0.75)
    assert found["accuracy"] == pytest.approx(0.5)  # 0.6 and 0.4 fall on the wrong side
    assert found["f1"] == pytest.approx(0.5)
    assert binary_metrics(y, p, threshold=0.35)["accuracy"] == pytest.approx(0.75)
    expected_log_loss = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert found["log_loss"] == pytest.approx(expected_log_loss)
    assert 0.5 <= found["pr_auc"] <= 1.0


def test_regression_metrics() -> None:
    found = regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]))
    assert found["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert found["mae"] == pytest.approx(1.0)
    assert found["mape"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)


@pytest.mark.parametrize(
    ("metric", "value", "than", "margin", "better"),
    [
        ("auc", 0.80, 0.79, 0.005, True),
        ("auc", 0.80, 0.799, 0.005, False),
        ("auc", 0.80, 0.80, 0.0, True),  # a tie passes a zero margin
        ("log_loss", 0.30, 0.40, 0.05, True),  # lower is better
        ("log_loss", 0.38, 0.40, 0.05, False),
        ("rmse", 2.0, 1.0, 0.0, False),
    ],
)
def test_is_better_follows_the_metrics_direction(
    metric: str, value: float, than: float, margin: float, better: bool
) -> None:
    assert is_better(metric, value, than, margin=margin) is better


def test_first_model_meeting_the_minimum_is_promoted() -> None:
    decision = decide({"auc": 0.7}, None, gate=PromotionSettings(metric="auc", minimum=0.6))
    assert decision.promote and "no champion yet" in decision.reason


def test_first_model_below_the_minimum_is_not_promoted() -> None:
    decision = decide({"auc": 0.55}, None, gate=PromotionSettings(metric="auc", minimum=0.6))
    assert not decision.promote
    assert decision.reason == "auc 0.5500 does not meet the minimum: must be at least 0.6"


def test_lower_is_better_minimum_is_a_ceiling() -> None:
    gate = PromotionSettings(metric="rmse", minimum=3.0)
    assert not decide({"rmse": 3.5}, None, gate=gate).promote
    assert "at most 3" in decide({"rmse": 3.5}, None, gate=gate).reason
    assert decide({"rmse": 2.5}, {"rmse": 2.8}, gate=gate, champion_version="4").promote


def test_challenger_must_beat_the_champion_by_the_margin() -> None:
    gate = PromotionSettings(metric="auc", margin=0.01, minimum=0.6)
    kept = decide({"auc": 0.805}, {"auc": 0.80}, gate=gate, champion_version="3")
    assert not kept.promote
    assert "champion v3 0.8000" in kept.reason and "not better by 0.01" in kept.reason
    assert decide({"auc": 0.811}, {"auc": 0.80}, gate=gate, champion_version="3").promote


def test_promotion_metric_of_the_other_task_is_refused() -> None:
    with pytest.raises(ValueError, match=r"promotion\.metric 'rmse' is not a metric of this task"):
        decide({"auc": 0.8}, None, gate=PromotionSettings(metric="rmse"))


def test_unknown_promotion_metric_fails_at_load() -> None:
    with pytest.raises(ValueError, match=r"promotion\.metric"):
        ModelSettings.model_validate({"promotion": {"metric": "gini"}})


def test_search_without_a_space_fails_at_load() -> None:
    with pytest.raises(ValueError, match="n_trials > 0 needs a search_space"):
        TuningSettings.model_validate({"n_trials": 3})


def test_the_gate_keeps_the_champion_when_it_cannot_be_scored() -> None:
    from prescore.training.promotion import gate

    settings = PromotionSettings(metric="auc", margin=0.0)
    note = "champion v1 cannot be scored on this test split: feature mismatch"
    kept = gate({"auc": 0.9}, None, unscorable=note, settings=settings, champion_version="1")
    assert (kept.promote, kept.reason) == (False, note)
    promoted = gate(
        {"auc": 0.9}, {"auc": 0.8}, unscorable="", settings=settings, champion_version="1"
    )
    assert promoted == decide({"auc": 0.9}, {"auc": 0.8}, gate=settings, champion_version="1")


@pytest.mark.parametrize(
    ("trained", "reason"),
    [
        (["a", "b"], ""),
        (["b", "a"], "its features in another order"),
        (["a", "c"], "features ['c'] no longer used, ['b'] new"),
    ],
)
def test_feature_change_says_how_a_champion_differs(trained: list[str], reason: str) -> None:
    from prescore.training.promotion import feature_change

    assert feature_change(trained, ["a", "b"]) == reason


def test_a_champion_on_other_features_gives_way_to_a_version_meeting_the_minimum() -> None:
    from prescore.training.promotion import gate

    settings = PromotionSettings(metric="auc", margin=0.0, minimum=0.7)
    changed = "features ['plan'] no longer used, ['late'] new"
    promoted = gate(
        {"auc": 0.8},
        None,
        unscorable="",
        settings=settings,
        champion_version="3",
        other_features=changed,
    )
    assert promoted.promote
    assert "champion v3 was trained on other features (features ['plan']" in promoted.reason
    below = gate(
        {"auc": 0.6},
        None,
        unscorable="",
        settings=settings,
        champion_version="3",
        other_features=changed,
    )
    assert not below.promote and "does not meet the minimum" in below.reason
