"""The publish checks on tiny candidate frames: counts, keys, scores, drift, the refusal."""

from __future__ import annotations

import pytest

from prescore.config import PublishSettings, UseCase
from prescore.scoring.checks import (
    CheckResult,
    PublishCheckError,
    candidate_checks,
    drift_check,
    require_passed,
)

pytestmark = pytest.mark.unit
SCHEMA = "customer_id string, score double"


def verdicts(checks: list[CheckResult]) -> dict[str, bool]:
    return {c.name: c.passed for c in checks}


@pytest.mark.parametrize(
    ("rows", "failed"),
    [
        ([("A", 0.1), ("B", 0.9), ("C", 0.5)], set()),
        ([("A", 0.1), ("A", 0.9), ("C", 0.5)], {"unique_keys"}),
        ([("A", 0.1), (None, 0.9), ("C", 0.5)], {"no_null_keys"}),
        ([("A", 0.1), ("B", float("nan")), ("C", 0.5)], {"no_nan_scores"}),
        ([("A", 0.1), ("B", None), ("C", 0.5)], {"no_nan_scores"}),
        ([("A", 0.1), ("B", 1.5), ("C", 0.5)], {"scores_in_range"}),
        ([("A", 0.1), ("B", 0.9)], {"row_count"}),
    ],
    ids=["clean", "duplicate-key", "null-key", "nan-score", "null-score", "out-of-range", "short"],
)
def test_candidate_checks_fail_exactly_the_broken_rule(
    spark, churn: UseCase, rows: list[tuple[str | None, float | None]], failed: set[str]
) -> None:
    frame = spark.createDataFrame(rows, SCHEMA)
    checks = candidate_checks(frame, usecase=churn, expected_rows=3)
    assert {name for name, passed in verdicts(checks).items() if not passed} == failed


def test_the_first_publish_passes_the_drift_check_unmeasured(spark) -> None:
    frame = spark.createDataFrame([("A", 0.1)], SCHEMA)
    found = drift_check(frame, None, reference_name="", task="binary", limits=PublishSettings())
    assert found == CheckResult(
        "score_drift", True, "no published version to compare with: first publish"
    )


def test_too_few_rows_leave_drift_unmeasured(spark) -> None:
    frame = spark.createDataFrame([("A", 0.1), ("B", 0.2)], SCHEMA)
    limits = PublishSettings(psi_min_rows=10)
    found = drift_check(frame, frame, reference_name="v1", task="binary", limits=limits)
    assert found.passed and found.detail.startswith("not measured: 2 rows < psi_min_rows 10")


def test_require_passed_names_every_failed_check() -> None:
    checks = [
        CheckResult("row_count", True, "3 rows"),
        CheckResult("unique_keys", False, "1 duplicate keys"),
        CheckResult("no_nan_scores", False, "2 NaN or null scores"),
    ]
    with pytest.raises(PublishCheckError) as caught:
        require_passed(checks, candidate="pred_churn v4")
    assert str(caught.value) == (
        "pred_churn v4 not published: unique_keys: 1 duplicate keys; "
        "no_nan_scores: 2 NaN or null scores"
    )
    require_passed(checks[:1], candidate="pred_churn v4")  # all passed: no error
