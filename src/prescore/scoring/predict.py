"""The model applied to every row to score: a scalar Arrow UDF over the feature columns.

The booster travels to the workers once as a broadcast. Only the float32 features go to Python,
where each Arrow batch becomes one contiguous matrix (`inplace_predict`), and only the scores
come back: the keys and the stamps (literals) stay in the JVM. `with_lineage` stamps which model,
which data version and when on every prediction row; `shadow_frame` scores the same rows with
the champion and the challenger side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prescore.catalog import CHALLENGER_SCORE, CHAMPION_SCORE, HORIZON, RUN_DATE, SCORE, TARGET_DATE
from prescore.identifiers import quote_spark_identifier
from prescore.training.features import as_model_input

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame

    from prescore.config import UseCase
    from prescore.platform.registry import ModelRef
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

    A scalar Arrow UDF: only the features go to Python and only the scores come back, while
        the keys stay in the JVM (bench/README.md compares it with shipping the keys both ways).
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
    champion: tuple[ModelRef, Broadcast[bytes]],
    challenger: tuple[ModelRef, Broadcast[bytes]],
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
        F.lit(run_date).alias(RUN_DATE),
    )


def with_lineage(
    df: DataFrame,
    *,
    ref: ModelRef,
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
        F.lit(run_date).alias(RUN_DATE),
    )


def with_horizon(df: DataFrame, *, run_date: date) -> DataFrame:
    """A time series' `horizon` column (days from the run date to target_date), after target_date."""
    from pyspark.sql import functions as F

    horizon = F.datediff(F.col(TARGET_DATE), F.lit(run_date)).alias(HORIZON)
    at = df.columns.index(TARGET_DATE) + 1
    return df.select(*df.columns[:at], horizon, *df.columns[at:])
