"""A suite's outcomes: which failed per severity, how they read, their rows in the results table."""

from __future__ import annotations

from datetime import date

import pytest
from chispa import assert_df_equality

from prescore.catalog import VALIDATION_SCHEMA
from prescore.data.validation import ExpectationOutcome, failed, failed_counts, outcomes_frame

pytestmark = pytest.mark.unit


def outcome(kind: str, severity: str, success: bool, unexpected: int | None = None):
    return ExpectationOutcome(
        expectation_type=kind,
        column="tenure_months",
        kwargs='{"column": "tenure_months"}',
        severity=severity,  # type: ignore[arg-type]
        success=success,
        unexpected_count=unexpected,
        unexpected_percent=None if unexpected is None else 25.0,
        observed_value="[1]",
    )


OUTCOMES = [
    outcome("expect_column_values_to_not_be_null", "error", False, 1),
    outcome("expect_column_values_to_be_between", "error", True),
    outcome("expect_column_mean_to_be_between", "warn", False),
    outcome("expect_column_values_to_be_unique", "warn", False, 2),
]


def test_failed_keeps_suite_order_per_severity() -> None:
    assert [o.expectation_type for o in failed(OUTCOMES, "warn")] == [
        "expect_column_mean_to_be_between",
        "expect_column_values_to_be_unique",
    ]
    assert failed_counts(OUTCOMES) == {"error": 1, "warn": 2}
    assert failed_counts([]) == {"error": 0, "warn": 0}


def test_describe_names_the_column_the_observation_and_the_unexpected_rows() -> None:
    assert OUTCOMES[0].describe() == (
        "expect_column_values_to_not_be_null(tenure_months): observed [1], 1 unexpected (25.00%)"
    )


def test_outcomes_frame_is_one_row_per_expectation(spark) -> None:
    day = date(2026, 11, 1)
    frame = outcomes_frame(spark, OUTCOMES[:1], run_date=day, usecase="churn", suite="raw")
    expected = spark.createDataFrame(
        [
            (
                day,
                "churn",
                "raw",
                "expect_column_values_to_not_be_null",
                "tenure_months",
                '{"column": "tenure_months"}',
                "error",
                False,
                1,
                25.0,
                "[1]",
            )
        ],
        schema=VALIDATION_SCHEMA,
    )
    assert_df_equality(frame, expected)
