"""Reliability of the model the score stage uses (case 7): a worse challenger never becomes
champion; @champion moved by someone while a scoring run is under way does not change that run,
whose rows all carry the version resolved at its start."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from prescore.context import RunContext
from prescore.platform import registry, tables
from prescore.stages import score, train
from support import copy_of_flow

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_a_worse_challenger_is_registered_but_never_champion(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path: Path
) -> None:
    """Case 7a: a model with two depth-1 trees, trained on the flow's data after its champion:
    worse on the same test split, so it becomes @challenger and @champion stays."""
    ctx = copy_of_flow(flow, tmp_path / "state")
    before = registry.resolve_alias(ctx.settings, ctx.usecase)
    weak_params = {**ctx.usecase.model.params, "n_estimators": 2, "max_depth": 1}
    weak = ctx.usecase.model_copy(
        update={"model": ctx.usecase.model.model_copy(update={"params": weak_params})}
    )
    outcome = train.run(RunContext(ctx.settings, weak, ctx.run_date, spark))

    assert outcome["promoted"] is False
    assert "not better" in str(outcome["reason"]), outcome["reason"]
    assert registry.resolve_alias(ctx.settings, ctx.usecase) == before
    challenger = registry.resolve_alias(ctx.settings, ctx.usecase, registry.CHALLENGER)
    assert challenger.version == str(outcome["version"]) != before.version


def test_champion_moved_during_scoring_changes_nothing_in_that_run(
    spark: SparkSession, flow: tuple[RunContext, Any], tmp_path: Path
) -> None:
    """Case 7b: a second version is registered and @champion moved to it once the scoring run's
    Spark work has started: every row still carries the version resolved at the start."""
    ctx = copy_of_flow(flow, tmp_path / "state")
    settings = ctx.settings
    before = registry.resolve_alias(settings, ctx.usecase)
    mlflow = registry.client(settings)
    source = mlflow.get_model_version(before.name, before.version).source
    copy = mlflow.create_model_version(before.name, source=source, run_id=before.run_id)
    assert str(copy.version) != before.version

    outcome: dict[str, Any] = {}

    def scoring() -> None:
        try:
            outcome["summary"] = score.run(ctx)
        except Exception as exc:  # reported below
            outcome["error"] = exc

    worker = threading.Thread(target=scoring)
    worker.start()
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 300
    while not tracker.getActiveJobsIds() and worker.is_alive():
        assert time.monotonic() < deadline, "the scoring run started no Spark job"
        time.sleep(0.01)
    moved = registry.ModelRef(before.name, str(copy.version), before.run_id)
    registry.set_alias(settings, moved, registry.CHAMPION)
    moved_mid_run = worker.is_alive()
    worker.join(600)

    assert moved_mid_run, "the run ended before the alias moved: nothing was tested"

    assert "error" not in outcome, outcome.get("error")
    assert registry.resolve_alias(settings, ctx.usecase).version == str(copy.version)
    predictions = tables.read_run(spark, settings, ctx.usecase.predictions_table, ctx.run_date)
    stamped = {
        tuple(r) for r in predictions.select("model_version", "model_run_id").distinct().collect()
    }
    assert stamped == {(before.version, before.run_id)}
