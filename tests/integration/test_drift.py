"""Publish's drift check: PSI of the candidate's scores against the published version's."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession

from prescore.config import PublishSettings, Settings, UseCase
from prescore.context import RunContext
from prescore.monitoring.metrics import population_stability_index
from prescore.platform import tables
from prescore.scoring.checks import PublishCheckError, drift_check
from prescore.serving import publish_log, snapshot
from prescore.stages import publish

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 5)
ROWS = 500
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, model_run_id string, "
    "features_version bigint, scored_at timestamp, valid_until timestamp, run_date date"
)
LIMITS = PublishSettings(max_psi=0.25, psi_bins=10, psi_min_rows=100)


def beta_scores(a: float, b: float, seed: int, rows: int = ROWS) -> list[float]:
    return [float(s) for s in np.random.default_rng(seed).beta(a, b, rows)]


def predictions(spark: SparkSession, scores: list[float], version: str = "1") -> DataFrame:
    stamp, until = datetime(2026, 11, 5, 6), datetime(2026, 11, 12)
    rows = [
        (f"C{i:05d}", s, "prescore-churn", version, "run1", 0, stamp, until, RUN_DATE)
        for i, s in enumerate(scores)
    ]
    return spark.createDataFrame(rows, PRED_SCHEMA)


def test_psi_counts_an_empty_bin_as_epsilon_not_infinity() -> None:
    psi = population_stability_index([100, 0], [50, 50])
    assert np.isfinite(psi) and psi > 2.0


def test_same_distribution_passes(spark: SparkSession, churn: UseCase) -> None:
    reference = predictions(spark, beta_scores(2, 5, seed=1))
    candidate = predictions(spark, beta_scores(2, 5, seed=2))
    result = drift_check(candidate, reference, reference_name="ref", task=churn.task, limits=LIMITS)
    assert result.passed, result.detail
    assert result.detail.startswith("PSI 0.0")


def test_shifted_distribution_fails_and_says_by_how_much(
    spark: SparkSession, churn: UseCase
) -> None:
    reference = predictions(spark, beta_scores(2, 5, seed=1))
    candidate = predictions(spark, beta_scores(5, 2, seed=2))
    result = drift_check(
        candidate, reference, reference_name="ref v0", task=churn.task, limits=LIMITS
    )
    assert not result.passed
    psi = float(result.detail.split()[1])
    assert psi > 1.0
    assert result.detail.endswith("vs ref v0 (max_psi 0.25)")


def test_regression_bins_are_the_reference_quantiles(spark: SparkSession, churn: UseCase) -> None:
    reference = predictions(spark, [s * 1000 for s in beta_scores(2, 5, seed=1)])
    same = predictions(spark, [s * 1000 for s in beta_scores(2, 5, seed=2)])
    shifted = predictions(spark, [s * 1000 + 300 for s in beta_scores(2, 5, seed=2)])
    check = {"reference_name": "ref", "task": "regression", "limits": LIMITS}
    assert drift_check(same, reference, **check).passed
    assert not drift_check(shifted, reference, **check).passed


@pytest.mark.parametrize(
    ("reference_rows", "note"),
    [(None, "no published version to compare with: first publish"), (50, "not measured: 50 rows")],
    ids=["first-publish", "too-few-rows"],
)
def test_check_passes_with_a_note_when_there_is_nothing_to_compare(
    spark: SparkSession, churn: UseCase, reference_rows: int | None, note: str
) -> None:
    candidate = predictions(spark, beta_scores(5, 2, seed=2))
    reference = (
        None if reference_rows is None else predictions(spark, beta_scores(2, 5, 1, reference_rows))
    )
    result = drift_check(candidate, reference, reference_name="ref", task=churn.task, limits=LIMITS)
    assert result.passed
    assert result.detail.startswith(note)


def test_drifted_candidate_is_not_published_and_the_pointer_stays(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
    keys = spark.createDataFrame(
        [(f"C{i:05d}", RUN_DATE) for i in range(ROWS)], "customer_id string, run_date date"
    )
    tables.replace_run(keys, fresh_settings, churn.clean_table, RUN_DATE)
    tables.replace_run(
        predictions(spark, beta_scores(2, 5, seed=1)),
        fresh_settings,
        churn.predictions_table,
        RUN_DATE,
    )
    first = publish.run(ctx)
    current = snapshot.current_path(fresh_settings, churn)
    served = current.resolve()

    shifted = predictions(spark, beta_scores(5, 2, seed=2), version="2")
    tables.replace_run(shifted, fresh_settings, churn.predictions_table, RUN_DATE)
    with pytest.raises(
        PublishCheckError,
        match=r"pred_churn v1 not published: score_drift: PSI \d+\.\d+ vs published pred_churn v0 "
        r"of 2026-11-05 \(max_psi 0\.25\)",
    ):
        publish.run(ctx)
    assert (
        current.resolve()
        == served
        == snapshot.snapshot_path(
            fresh_settings, churn, RUN_DATE, first["predictions_version"]
        ).resolve()
    )
    log = tables.read(spark, fresh_settings, publish_log.PUBLISH_LOG).collect()
    assert [(r.action, r.predictions_version) for r in log] == [("publish", 0)]

    steady = predictions(spark, beta_scores(2, 5, seed=3), version="2")
    tables.replace_run(steady, fresh_settings, churn.predictions_table, RUN_DATE)
    assert publish.run(ctx)["predictions_version"] == 2
    log = (
        tables.read(spark, fresh_settings, publish_log.PUBLISH_LOG)
        .orderBy("published_at")
        .collect()
    )
    assert '"score_drift"' in log[-1].checks and "PSI 0.0" in log[-1].checks
