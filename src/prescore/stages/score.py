"""Score: @champion resolved once -> every key of the clean run_date scored -> pred_<usecase>.

Grain out: one row per key and run_date, with the score, the model name, version and run id, the
Delta version of the clean table read, scored_at and valid_until. The booster travels to the
workers once as a broadcast and predicts on contiguous float32 Arrow batches (`inplace_predict`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prescore import registry, tables
from prescore.features import as_model_input

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame

    from prescore.config import UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)
SCORE = "score"
_BOOSTERS: dict[str, Any] = {}  # one deserialised booster per model version, per Python worker


def load_booster(raw: bytes) -> Any:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": 1})  # one Spark task per core already
    return booster


def predict_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    model: Broadcast[bytes],
    model_key: str,
    keys: list[str],
    features: list[str],
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: keys + score per Arrow batch; the booster is loaded once per worker.

    Features arrive as float32 without nulls (`as_model_input`), so each column is copied once
    into a contiguous matrix and the keys pass through untouched.
    """
    import numpy as np
    import pyarrow as pa

    booster = _BOOSTERS.get(model_key)
    if booster is None:
        booster = _BOOSTERS[model_key] = load_booster(model.value)
    for batch in batches:
        matrix = np.empty((batch.num_rows, len(features)), dtype=np.float32)
        for index, name in enumerate(features):
            matrix[:, index] = batch.column(name).to_numpy(zero_copy_only=False)
        scores = pa.array(booster.inplace_predict(matrix), type=pa.float64())
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(k) for k in keys), scores], names=[*keys, SCORE]
        )


def score_frame(
    df: DataFrame, *, model: Broadcast[bytes], model_key: str, usecase: UseCase
) -> DataFrame:
    """Keys + score for every row of a clean frame (one row per key in, one row per key out)."""
    key_fields = ", ".join(f"`{k}` {df.schema[k].dataType.simpleString()}" for k in usecase.keys)
    features = usecase.features
    return (
        df.select(*usecase.keys, *features)
        .transform(as_model_input, features=features)
        .mapInArrow(
            lambda it: predict_batches(
                it, model=model, model_key=model_key, keys=usecase.keys, features=features
            ),
            schema=f"{key_fields}, {SCORE} double",
        )
    )


def with_lineage(
    df: DataFrame,
    *,
    ref: registry.ModelRef,
    features_version: int,
    run_date: date,
    scored_at: datetime,
    ttl_days: int,
) -> DataFrame:
    """Stamp which model, which data version and when: the same values on every row."""
    from pyspark.sql import functions as F

    return df.select(
        "*",
        F.lit(ref.name).alias("model_name"),
        F.lit(ref.version).alias("model_version"),
        F.lit(ref.run_id).alias("model_run_id"),
        F.lit(features_version).alias("features_version"),
        F.lit(scored_at).alias("scored_at"),
        F.lit(datetime.combine(run_date + timedelta(days=ttl_days), datetime.min.time())).alias(
            "valid_until"
        ),
        F.lit(run_date).alias(tables.RUN_DATE),
    )


def model_bytes(ref: registry.ModelRef) -> bytes:
    import mlflow.xgboost

    return bytes(mlflow.xgboost.load_model(ref.uri).save_raw("ubj"))


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    ref = registry.resolve_alias(settings, usecase, registry.CHAMPION)  # once, for every row
    model = ctx.spark.sparkContext.broadcast(model_bytes(ref))
    clean_version = tables.latest_version(ctx.spark, settings, usecase.clean_table)
    clean = tables.read_run(ctx.spark, settings, usecase.clean_table, ctx.run_date, clean_version)
    predictions = score_frame(clean, model=model, model_key=ref.uri, usecase=usecase).transform(
        with_lineage,
        ref=ref,
        features_version=clean_version,
        run_date=ctx.run_date,
        scored_at=datetime.now(),
        ttl_days=usecase.score.ttl_days,
    )
    version = tables.replace_run(predictions, settings, usecase.predictions_table, ctx.run_date)
    model.unpersist()
    log.info("score: %s v%s -> %s v%d", ref.name, ref.version, usecase.predictions_table, version)
    return {"model": ref.name, "model_version": ref.version, "predictions_version": version}
