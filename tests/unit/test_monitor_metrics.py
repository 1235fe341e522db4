"""The drift metrics on known histograms: PSI (moved here from publish, one copy) and binned KS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescore.monitoring.metrics import ks_statistic, population_stability_index
from prescore.scoring import checks

pytestmark = pytest.mark.unit


def test_the_publish_checks_use_the_one_psi() -> None:
    assert checks.population_stability_index is population_stability_index


@pytest.mark.parametrize(
    ("reference", "candidate", "expected"),
    [
        ([100, 100, 100], [100, 100, 100], 0.0),
        ([50, 50], [25, 75], 0.25 * np.log(2) + 0.25 * np.log(1.5)),
    ],
    ids=["same", "shifted"],
)
def test_psi_of_known_histograms(reference, candidate, expected: float) -> None:
    assert population_stability_index(reference, candidate) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reference", "candidate", "expected"),
    [
        ([10, 10, 10, 10], [20, 20, 20, 20], 0.0),  # same shares, other totals
        ([50, 50, 0, 0], [0, 0, 50, 50], 1.0),  # disjoint
        ([25, 25, 25, 25], [50, 25, 25, 0], 0.25),  # cumulative gap largest after bin 1
    ],
    ids=["same", "disjoint", "shifted"],
)
def test_ks_of_known_histograms(reference, candidate, expected: float) -> None:
    assert ks_statistic(reference, candidate) == pytest.approx(expected)


def test_ks_of_an_empty_side_is_nan() -> None:
    assert math.isnan(ks_statistic([0, 0], [1, 2]))
