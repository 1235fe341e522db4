"""Package.explain: the contributions behind a score, on a small booster trained here."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from prescore.training.package import FeatureStep, Package, Preprocessing, reasons_type

ROWS = np.array([[1.5, 2.0], [np.nan, 0.0], [-0.25, 1.0], [0.5, np.nan]], dtype=np.float32)


@pytest.fixture(scope="module")
def package() -> Package:
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.normal(size=400), rng.integers(0, 3, 400).astype(float)])
    x[::17, 0] = np.nan  # some missing values, so the booster learns a default direction
    y = (np.nan_to_num(x[:, 0]) + (x[:, 1] == 2) > 0.5).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, y), 20)
    steps = [
        FeatureStep("tenure", "numeric"),
        FeatureStep("plan", "categorical", levels=["basic", "plus", "pro"]),
    ]
    return Package(Preprocessing(steps), booster)


@pytest.mark.parametrize("approximate", [False, True])
def test_contributions_and_bias_add_up_to_the_margin(package: Package, approximate: bool) -> None:
    dmatrix = xgb.DMatrix(ROWS, missing=np.nan)
    contributions = package.booster.predict(
        dmatrix, pred_contribs=True, approx_contribs=approximate
    )
    margin = package.booster.predict(dmatrix, output_margin=True)
    np.testing.assert_allclose(contributions.sum(axis=1), margin, atol=1e-5)
    # with every feature kept, the reasons are those contributions without the bias
    reasons = package.explain(ROWS, top_k=2, approximate=approximate).to_pylist()
    kept = [sum(r["contribution"] for r in row) for row in reasons]
    np.testing.assert_allclose(kept, contributions[:, :-1].sum(axis=1), atol=1e-6)


def test_reasons_are_largest_first_and_show_the_value_the_model_saw(package: Package) -> None:
    reasons = package.explain(ROWS, top_k=2, approximate=False)
    assert reasons.type == reasons_type()
    rows = reasons.to_pylist()
    for row in rows:
        sizes = [abs(r["contribution"]) for r in row]
        assert sizes == sorted(sizes, reverse=True)
    seen = [{r["feature"]: r["value"] for r in row} for row in rows]
    assert seen == [
        {"tenure": "1.5", "plan": "pro"},
        {"tenure": None, "plan": "basic"},
        {"tenure": "-0.25", "plan": "plus"},
        {"tenure": "0.5", "plan": None},
    ]
    top = package.explain(ROWS, top_k=1, approximate=True).to_pylist()
    assert [len(row) for row in top] == [1, 1, 1, 1]
