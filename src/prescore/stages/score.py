"""Score: @champion resolved once -> every key of the clean run_date scored -> pred_<usecase>.

Grain out: one row per key and run_date, with the score, the model name, version and run id, the
Delta version of the clean table read, scored_at and valid_until (scoring.predict: the Arrow UDF
and the stamps; scoring.population: the rows a run date scores). With `score.explain`, each row
also holds its `reasons`: the top_k features behind the score, from the same Arrow batches
(training.package: Package.explain).

A time-series use case scores one row per series and horizon h in 1..H: target_date = run date + h,
features of origin run_date from its clean history (training.timeseries); the published key
is (keys..., target_date), and `horizon` is written beside it.

Shadow scoring: when @challenger is set (and is not the champion), the same stage run makes a
second pass over the same clean version, scoring every key with both models from the same feature
batches into shadow_<usecase> (one row per key and run_date: champion_score, challenger_score and
both versions), so the two can be compared on live data (sql/delta/model_comparison.sql) before a
promotion. Readers never see challenger scores; a failed shadow write fails the stage, after the
champion's predictions were written.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from prescore.platform import registry, tables
from prescore.platform.imports import imported_meanwhile
from prescore.platform.spark import temporary_conf
from prescore.scoring.population import rows_to_score
from prescore.scoring.predict import (
    Scorer,
    score_frame,
    scorer,
    shadow_frame,
    with_horizon,
    with_lineage,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.config import Settings, UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


def challenger_of(
    settings: Settings, usecase: UseCase, champion: registry.ModelRef
) -> registry.ModelRef | None:
    """@challenger when shadow scoring is on and it names another version than the champion."""
    if not usecase.score.shadow or not registry.has_alias(settings, usecase, registry.CHALLENGER):
        return None
    challenger = registry.resolve_alias(settings, usecase, registry.CHALLENGER)
    return None if challenger.version == champion.version else challenger


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    # The champion first, once, for every row: before any read, so that a missing one is the
    # error, and a move during the run changes nothing in it.
    ref = registry.resolve_alias(settings, usecase, registry.CHAMPION)
    challenger = challenger_of(settings, usecase, ref)
    clean_version = tables.latest_version(settings, usecase.clean_table)
    # Finding the rows is a fresh process's first wait on Spark: the model's library imports
    # meanwhile.
    with imported_meanwhile("xgboost"):
        clean = rows_to_score(ctx.spark, settings, usecase, ctx.run_date, clean_version)
    package = registry.load_package(ref)
    model = scorer(ctx.spark, key=ref.uri, package=package, explain=usecase.score.explain)
    scored_at = datetime.now()
    predictions = score_frame(clean, model=model, usecase=usecase).transform(
        with_lineage,
        ref=ref,
        features_version=clean_version,
        run_date=ctx.run_date,
        scored_at=scored_at,
        ttl_days=usecase.score.ttl_days,
    )
    if usecase.time_series is not None:
        predictions = predictions.transform(with_horizon, run_date=ctx.run_date)
    with temporary_conf(ctx.spark, ARROW_BATCH, str(usecase.score.arrow_batch_rows)):
        version = tables.replace_run(predictions, settings, usecase.predictions_table, ctx.run_date)
        log.info(
            "score: %s v%s -> %s v%d", ref.name, ref.version, usecase.predictions_table, version
        )
        summary: dict[str, object] = {
            "model": ref.name,
            "model_version": ref.version,
            "predictions_version": version,
        }
        if challenger is not None:
            summary |= score_shadow(ctx, clean, (ref, model), challenger, scored_at)
    model.parts.unpersist()
    return summary


def score_shadow(
    ctx: RunContext,
    clean: DataFrame,
    champion: tuple[registry.ModelRef, Scorer],
    challenger: registry.ModelRef,
    scored_at: datetime,
) -> dict[str, object]:
    """Write both models' scores of the run date into shadow_<usecase>; nothing reads it to serve."""
    usecase = ctx.usecase
    package = registry.load_package(challenger)
    chall_model = scorer(ctx.spark, key=challenger.uri, package=package)
    shadow = shadow_frame(
        clean,
        champion=champion,
        challenger=(challenger, chall_model),
        usecase=usecase,
        run_date=ctx.run_date,
        scored_at=scored_at,
    )
    version = tables.replace_run(shadow, ctx.settings, usecase.shadow_table, ctx.run_date)
    chall_model.parts.unpersist()
    log.info(
        "score: shadow @challenger v%s -> %s v%d",
        challenger.version,
        usecase.shadow_table,
        version,
    )
    return {"challenger_version": challenger.version, "shadow_version": version}
