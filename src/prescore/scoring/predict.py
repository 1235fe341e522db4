"""The model applied to every row to score: a scalar Arrow UDF over the feature columns.

Each model version travels to the workers once as a broadcast of its package (the booster and the
preprocessing it was trained with: training.package), loaded once per Python worker. Only the
feature columns go to Python, as clean holds them; each Arrow batch becomes one contiguous float32
matrix through the package's own preprocessing (`Preprocessing.matrix`, the code the pyfunc and
computed scores run) and `inplace_predict`, and only the scores come back: the keys and the stamps
(literals) stay in the JVM. `with_lineage` stamps which model, which data version and when on
every prediction row; `shadow_frame` scores the same rows with the champion and the challenger
side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prescore.catalog import (
    CHALLENGER_SCORE,
    CHAMPION_SCORE,
    HORIZON,
    REASONS,
    RUN_DATE,
    SCORE,
    TARGET_DATE,
)
from prescore.identifiers import quote_spark_identifier
from prescore.training.package import REASONS_DDL, Package

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import ExplainSettings, UseCase
    from prescore.platform.registry import ModelRef
_PACKAGES: dict[str, Package] = {}  # one loaded package per model version, per Python worker


class MissingColumnsError(ValueError):
    """The clean table lacks a key or feature column the use case declares."""


@dataclass(frozen=True)
class Scorer:
    """One model version as the workers get it: the score column it fills, its key (the version's
    URI), its feature columns and its package's parts, broadcast; with `explain`, it also fills
    the reasons column."""

    column: str
    key: str
    features: list[str]
    parts: Broadcast[tuple[bytes, str]]
    explain: ExplainSettings | None = None

    def outputs(self) -> dict[str, str]:
        """The columns this model fills, with their Spark types."""
        return {self.column: "double"} | ({REASONS: REASONS_DDL} if self.explain else {})

    def package(self) -> Package:
        """The package, loaded on first use in this Python worker."""
        if self.key not in _PACKAGES:
            booster, preprocessing = self.parts.value
            _PACKAGES[self.key] = Package.from_parts(booster, preprocessing, threads=1)
        return _PACKAGES[self.key]


def scorer(
    spark: SparkSession,
    *,
    key: str,
    package: Package,
    column: str = SCORE,
    explain: ExplainSettings | None = None,
) -> Scorer:
    """Broadcast `package` for the workers (unpersist `parts` once the scores are written)."""
    parts = spark.sparkContext.broadcast(package.to_parts())
    return Scorer(column=column, key=key, features=package.features, parts=parts, explain=explain)


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


def input_columns(scorers: list[Scorer]) -> list[str]:
    """Every feature any of the models reads, each once, in first-seen order."""
    return list(dict.fromkeys(f for s in scorers for f in s.features))


def predict_batches(
    batches: Iterator[tuple[pa.Array, ...]], *, scorers: list[Scorer]
) -> Iterator[pa.Array]:
    """Scalar Arrow UDF body: per Arrow batch of the models' input columns (`input_columns`, in
    that order), one score per row and model, and the reasons of those that explain. One output
    column is yielded as is, several as a struct (`outputs`)."""
    import pyarrow as pa

    names = input_columns(scorers)
    packages = [s.package() for s in scorers]
    for columns in batches:
        by_name = dict(zip(names, columns, strict=True))
        arrays = []
        for model, package in zip(scorers, packages, strict=True):
            matrix = package.preprocessing.matrix(by_name)
            arrays.append(pa.array(package.predict_matrix(matrix), type=pa.float64()))
            if model.explain is not None:
                top_k, approximate = model.explain.top_k, model.explain.approximate
                arrays.append(package.explain(matrix, top_k=top_k, approximate=approximate))
        if len(arrays) == 1:
            yield arrays[0]
        else:
            yield pa.StructArray.from_arrays(arrays, names=list(outputs(scorers)))


def outputs(scorers: list[Scorer]) -> dict[str, str]:
    """Every column the models fill, in order, with its Spark type."""
    return {name: kind for s in scorers for name, kind in s.outputs().items()}


def scores_udf(scorers: list[Scorer], returns: str) -> Any:
    """The scalar-iterator Arrow UDF over the models' input columns (`predict_batches`)."""
    import warnings

    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    def predict(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        return predict_batches(batches, scorers=scorers)

    # The type is given, not inferred from hints: this module's hints are strings naming pyarrow,
    # which is imported only for type checking. Spark warns that hints are preferred.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="It is preferred to specify type hints")
        return arrow_udf(predict, returns, ArrowUDFType.SCALAR_ITER)


def scored_by(df: DataFrame, *, scorers: list[Scorer], usecase: UseCase) -> DataFrame:
    """Published keys + one score column per model (and the reasons of a model that explains)
    for every row of a frame to score (one row per key, or per key and target day for a time
    series).

    A scalar Arrow UDF: only the features go to Python and only the scores come back, while
    the keys stay in the JVM (bench/README.md compares it with shipping the keys both ways).
    """
    from pyspark.sql import functions as F

    keys = usecase.published_keys
    columns = outputs(scorers)
    inputs = [F.col(f) for f in input_columns(scorers)]
    if len(columns) == 1:
        ((column, kind),) = columns.items()
        return df.select(*keys, scores_udf(scorers, kind)(*inputs).alias(column))
    returns = ", ".join(f"{quote_spark_identifier(c)} {kind}" for c, kind in columns.items())
    scores = scores_udf(scorers, returns)(*inputs)
    return df.select(*keys, scores.alias("_scores")).select(
        *keys, *(F.col("_scores")[c].alias(c) for c in columns)
    )


def score_frame(df: DataFrame, *, model: Scorer, usecase: UseCase) -> DataFrame:
    """Keys + score for every row of a clean frame (one row per key in, one row per key out)."""
    return scored_by(df, scorers=[model], usecase=usecase)


def shadow_frame(
    df: DataFrame,
    *,
    champion: tuple[ModelRef, Scorer],
    challenger: tuple[ModelRef, Scorer],
    usecase: UseCase,
    run_date: date,
    scored_at: datetime,
) -> DataFrame:
    """Both models on the same rows, each through its own package: keys, champion_score,
    challenger_score, their versions, scored_at and run_date; one row per key."""
    from dataclasses import replace

    from pyspark.sql import functions as F

    (champ, champ_model), (chall, chall_model) = champion, challenger
    scorers = [
        replace(champ_model, column=CHAMPION_SCORE, explain=None),
        replace(chall_model, column=CHALLENGER_SCORE, explain=None),
    ]
    return scored_by(df, scorers=scorers, usecase=usecase).select(
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
