"""Score: @champion resolved once -> every key of the clean run_date scored -> pred_<usecase>.

Grain out: one row per key and run_date, with the score, the model name, version and run id, the
Delta version of the clean table read, scored_at and valid_until. The booster travels to the
workers once as a broadcast. A scalar Arrow UDF sends only the float32 features to Python, where
each Arrow batch becomes one contiguous matrix (`inplace_predict`), and only the scores come back:
the keys and the stamps (literals) stay in the JVM.

A time-series use case scores one row per series and horizon h in 1..H: target_date = run date + h,
features of origin run_date from its clean history (prescore.training.timeseries); the published key is
(keys..., target_date), and `horizon` is written beside it.

Shadow scoring: when @challenger is set (and is not the champion), the same stage run makes a
second pass over the same clean version, scoring every key with both models from the same feature
batches into shadow_<usecase> (one row per key and run_date: champion_score, challenger_score and
both versions), so the two can be compared on live data (sql/delta/model_comparison.sql) before a
promotion. Readers never see challenger scores; a failed shadow write fails the stage, after the
champion's predictions were written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prescore.config import TARGET_DATE
from prescore.identifiers import quote_spark_identifier
from prescore.platform import registry, tables
from prescore.training import timeseries
from prescore.training.features import as_model_input

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)
SCORE = "score"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
CHAMPION_SCORE, CHALLENGER_SCORE = "champion_score", "challenger_score"
_BOOSTERS: dict[str, Any] = {}  # one deserialised booster per model version, per Python worker


class MissingColumnsError(ValueError):
    """The clean table lacks a key or feature column the use case declares."""


def model_columns(usecase: UseCase) -> list[str]:
    """The clean columns scoring reads: keys and features, for a time series the day, the label
    and the source features (the rest is built from them)."""
    if usecase.time_series is None:
        return [*usecase.keys, *usecase.features]
    return [*usecase.row_keys, usecase.label, *usecase.source_features]


def require_model_columns(df: DataFrame, *, usecase: UseCase, table: str) -> None:
    """Fail before scoring, naming every declared key or feature column the frame lacks."""
    missing = [c for c in model_columns(usecase) if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            f"{table}: columns {missing} are keys or features of use case {usecase.name!r} "
            "but not in the table; nothing was scored"
        )


def load_booster(raw: bytes) -> Any:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    booster.set_param({"nthread": 1})  # one Spark task per core already
    return booster


def predict_batches(
    batches: Iterator[tuple[pa.Array, ...]],
    *,
    models: list[tuple[str, Broadcast[bytes], str]],
) -> Iterator[pa.Array]:
    """Scalar Arrow UDF body: one score per row and model, per Arrow batch of feature columns;
    each booster is loaded once per worker. One model gives a double column, several a struct
    with one double field per model.

    Features arrive as float32 without nulls (`as_model_input`), so each column is copied once
    into a contiguous matrix that every model predicts on.
    """
    import numpy as np
    import pyarrow as pa

    boosters = []
    for _, model, model_key in models:
        if model_key not in _BOOSTERS:
            _BOOSTERS[model_key] = load_booster(model.value)
        boosters.append(_BOOSTERS[model_key])
    names = [column for column, _, _ in models]
    for columns in batches:
        matrix = np.empty((len(columns[0]), len(columns)), dtype=np.float32)
        for index, column in enumerate(columns):
            matrix[:, index] = column.to_numpy(zero_copy_only=False)
        scores = [pa.array(b.inplace_predict(matrix), type=pa.float64()) for b in boosters]
        yield scores[0] if len(scores) == 1 else pa.StructArray.from_arrays(scores, names=names)


def scores_udf(models: list[tuple[str, Broadcast[bytes], str]], returns: str) -> Any:
    """The scalar-iterator Arrow UDF over the feature columns (`predict_batches`)."""
    import warnings

    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    def predict(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        return predict_batches(batches, models=models)

    # The type is given, not inferred from hints: this module's hints are strings naming pyarrow,
    # which is imported only for type checking. Spark warns that hints are preferred.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="It is preferred to specify type hints")
        return arrow_udf(predict, returns, ArrowUDFType.SCALAR_ITER)


def scored_by(
    df: DataFrame, *, models: list[tuple[str, Broadcast[bytes], str]], usecase: UseCase
) -> DataFrame:
    """Published keys + one score column per model for every row of a frame to score (one row
    per key, or per key and target day for a time series).

    A scalar Arrow UDF, not mapInArrow: only the features go to Python and only the scores come
    back, while the keys stay in the JVM (bench: about half the JVM CPU of shipping the keys
    both ways).
    """
    from pyspark.sql import functions as F

    keys, features = usecase.published_keys, usecase.features
    columns = [column for column, _, _ in models]
    returns = (
        ", ".join(f"{quote_spark_identifier(c)} double" for c in columns)
        if len(columns) > 1
        else "double"
    )
    scores = scores_udf(models, returns)(*(F.col(f) for f in features))
    inputs = df.select(*keys, *features).transform(as_model_input, features=features)
    if len(columns) == 1:
        return inputs.select(*keys, scores.alias(columns[0]))
    return inputs.select(*keys, scores.alias("_scores")).select(
        *keys, *(F.col("_scores")[c].alias(c) for c in columns)
    )


def score_frame(
    df: DataFrame, *, model: Broadcast[bytes], model_key: str, usecase: UseCase
) -> DataFrame:
    """Keys + score for every row of a clean frame (one row per key in, one row per key out)."""
    return scored_by(df, models=[(SCORE, model, model_key)], usecase=usecase)


def shadow_frame(
    df: DataFrame,
    *,
    champion: tuple[registry.ModelRef, Broadcast[bytes]],
    challenger: tuple[registry.ModelRef, Broadcast[bytes]],
    usecase: UseCase,
    run_date: date,
    scored_at: datetime,
) -> DataFrame:
    """Both models on the same rows: keys, champion_score, challenger_score, their versions,
    scored_at and run_date; one row per key."""
    from pyspark.sql import functions as F

    (champ, champ_model), (chall, chall_model) = champion, challenger
    models = [(CHAMPION_SCORE, champ_model, champ.uri), (CHALLENGER_SCORE, chall_model, chall.uri)]
    return scored_by(df, models=models, usecase=usecase).select(
        "*",
        F.lit(champ.name).alias("model_name"),
        F.lit(champ.version).alias("champion_version"),
        F.lit(chall.version).alias("challenger_version"),
        F.lit(chall.run_id).alias("challenger_run_id"),
        F.lit(scored_at).alias("scored_at"),
        F.lit(run_date).alias(tables.RUN_DATE),
    )


def shadow_table(usecase: UseCase) -> str:
    return f"shadow_{usecase.name}"


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


def with_horizon(df: DataFrame, *, run_date: date) -> DataFrame:
    """A time series' `horizon` column (days from the run date to target_date), after target_date."""
    from pyspark.sql import functions as F

    horizon = F.datediff(F.col(TARGET_DATE), F.lit(run_date)).alias(timeseries.HORIZON)
    at = df.columns.index(TARGET_DATE) + 1
    return df.select(*df.columns[:at], horizon, *df.columns[at:])


def rows_to_score(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> DataFrame:
    """The clean run date's rows, or for a time series one row per series seen in the last
    `context_days` and horizon, with the features of origin run_date."""
    table = f"{usecase.clean_table} v{clean_version}"
    if usecase.time_series is None:
        clean = tables.read_run(spark, settings, usecase.clean_table, run_date, clean_version)
        require_model_columns(clean, usecase=usecase, table=table)
        return clean
    history = scoring_history(spark, settings, usecase, run_date, clean_version)
    require_model_columns(history, usecase=usecase, table=table)
    return timeseries.scoring_frame(history, usecase=usecase, run_date=run_date)


def scoring_history(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> DataFrame:
    """A time series' clean days that scoring run_date reads: its longest lag or window back."""
    assert usecase.time_series is not None
    days = usecase.time_series.context_days
    return timeseries.read_history(
        spark, settings, usecase, run_date, days=days, version=clean_version
    )


def scored_population(
    spark: SparkSession, settings: Settings, usecase: UseCase, run_date: date, clean_version: int
) -> int:
    """How many predictions score writes for run_date from this clean version: one per key, or
    one per series and horizon for a time series."""
    if usecase.time_series is None:
        return tables.read_run(
            spark, settings, usecase.clean_table, run_date, clean_version
        ).count()
    history = scoring_history(spark, settings, usecase, run_date, clean_version)
    return timeseries.series_count(history, usecase=usecase) * usecase.time_series.horizon_days


def model_bytes(ref: registry.ModelRef) -> bytes:
    import mlflow.xgboost

    return bytes(mlflow.xgboost.load_model(ref.uri).save_raw("ubj"))


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
    ref = registry.resolve_alias(settings, usecase, registry.CHAMPION)  # once, for every row
    challenger = challenger_of(settings, usecase, ref)
    clean_version = tables.latest_version(ctx.spark, settings, usecase.clean_table)
    clean = rows_to_score(ctx.spark, settings, usecase, ctx.run_date, clean_version)
    model = ctx.spark.sparkContext.broadcast(model_bytes(ref))
    scored_at = datetime.now()
    predictions = score_frame(clean, model=model, model_key=ref.uri, usecase=usecase).transform(
        with_lineage,
        ref=ref,
        features_version=clean_version,
        run_date=ctx.run_date,
        scored_at=scored_at,
        ttl_days=usecase.score.ttl_days,
    )
    if usecase.time_series is not None:
        predictions = predictions.transform(with_horizon, run_date=ctx.run_date)
    with arrow_batch_rows(ctx.spark, usecase.score.arrow_batch_rows):
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
    model.unpersist()
    return summary


@contextmanager
def arrow_batch_rows(spark: SparkSession, rows: int) -> Iterator[None]:
    """Arrow batches of `rows` rows for the writes inside; the session's setting comes back after."""
    before = spark.conf.get(ARROW_BATCH, None)
    spark.conf.set(ARROW_BATCH, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(ARROW_BATCH)
        else:
            spark.conf.set(ARROW_BATCH, before)


def score_shadow(
    ctx: RunContext,
    clean: DataFrame,
    champion: tuple[registry.ModelRef, Broadcast[bytes]],
    challenger: registry.ModelRef,
    scored_at: datetime,
) -> dict[str, object]:
    """Write both models' scores of the run date into shadow_<usecase>; nothing reads it to serve."""
    usecase = ctx.usecase
    chall_model = ctx.spark.sparkContext.broadcast(model_bytes(challenger))
    shadow = shadow_frame(
        clean,
        champion=champion,
        challenger=(challenger, chall_model),
        usecase=usecase,
        run_date=ctx.run_date,
        scored_at=scored_at,
    )
    version = tables.replace_run(shadow, ctx.settings, shadow_table(usecase), ctx.run_date)
    chall_model.unpersist()
    log.info(
        "score: shadow @challenger v%s -> %s v%d",
        challenger.version,
        shadow_table(usecase),
        version,
    )
    return {"challenger_version": challenger.version, "shadow_version": version}
