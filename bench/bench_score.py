"""Score stage throughput: prescore's `score_frame` in local Spark against native XGBoost.

Same rows, same model, same run. Churn rows from prescore.datagen go through the clean stage's
transforms once (cached under bench/.data/); a small booster is trained natively on a sample.
Then, in rows per second, best of 3 after a warm-up:

- baseline: `Booster.inplace_predict` over the whole float32 matrix, one process, nthread = cores;
- prescore: `score_frame` over a cached DataFrame of the same rows in local[cores], written to
  Spark's no-op sink, with the Arrow batch size as configured and with larger batches;
- peers on the same cached frame: xgboost.spark's model transform and mlflow.pyfunc.spark_udf.
"""

from __future__ import annotations

import math
import shutil
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import DATA_DIR, Measurement, best_of
from prescore import tables
from prescore.config import load_settings, load_usecase
from prescore.datagen import churn_chunks
from prescore.features import as_model_input
from prescore.spark import get_spark
from prescore.stages.clean import clean_rows
from prescore.stages.score import SCORE, load_booster, score_frame

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import UseCase

BENCHMARK = "score"
ROWS = {"small": 200_000, "full": 10_000_000}
TRAIN_ROWS = 50_000
CORES = 2  # local[2] (conf/env/test.yaml) and the baseline's nthread
PARTITIONS = 2 * CORES  # of the cached frame: a few tasks per core even out a noisy machine
RUN_DATE = date(2024, 1, 1)
SEED = 42
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
LARGER_BATCHES = (100_000,)  # tried on top of the configured value (Spark's default: 10,000)
NATIVE = "native inplace_predict"
PRESCORE = "prescore score_frame"


# ---------------------------------------------------------------- data and model


def write_valid_rows(usecase: UseCase, rows: int, target: Path) -> None:
    """Generated rows minus those clean would quarantine (null key, out of range, older duplicate)."""
    columns = [*usecase.keys, usecase.event_time, *usecase.features, usecase.label, *usecase.pii]
    target.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(churn_chunks(rows, RUN_DATE, SEED)):
        valid = chunk[usecase.keys].notna().all(axis=1)
        for column, rule in usecase.cleaning.valid_range.items():
            values = chunk[column].astype("float64")  # missing -> NaN: never out of range
            if rule.min is not None:
                valid &= ~(values < rule.min)
            if rule.max is not None:
                valid &= ~(values > rule.max)
        latest = (
            chunk[valid]
            .sort_values(usecase.event_time, ascending=False)
            .drop_duplicates(usecase.keys)
        )
        table = pa.Table.from_pandas(latest[columns], preserve_index=False)
        pq.write_table(table, target / f"part-{index:05d}.parquet", coerce_timestamps="us")


def clean_table(spark: SparkSession, usecase: UseCase, size: str) -> Path:
    """Parquet folder of clean rows (as the clean stage writes them), generated once per size."""
    root = DATA_DIR / f"score-{size}"
    clean = root / "clean"
    if not (clean / "_SUCCESS").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_valid_rows(usecase, ROWS[size], root / "raw")
        from pyspark.sql import functions as F

        raw = spark.read.parquet(str(root / "raw")).withColumn(tables.RUN_DATE, F.lit(RUN_DATE))
        clean_rows(raw, usecase=usecase, secret=b"bench-only").write.parquet(str(clean))
    return clean


def model_matrix(clean: Path, usecase: UseCase) -> tuple[np.ndarray, np.ndarray]:
    """The features as one float32 matrix (null -> NaN, as `as_model_input`) and the labels."""
    frame = pq.read_table(clean, columns=[*usecase.features, usecase.label]).to_pandas()
    return frame[usecase.features].to_numpy(dtype=np.float32), frame[usecase.label].to_numpy()


def train_model(matrix: np.ndarray, labels: np.ndarray, usecase: UseCase) -> Any:
    """A native XGBoost model with the use case's parameters, on a sample (not what is measured)."""
    import xgboost

    estimator = xgboost.XGBClassifier if usecase.task == "binary" else xgboost.XGBRegressor
    model = estimator(**usecase.model.params, n_jobs=CORES)
    model.fit(matrix[:TRAIN_ROWS], labels[:TRAIN_ROWS])
    return model


# ---------------------------------------------------------------- subjects


def measure(subject: str, rows: int, seconds: float, note: str) -> Measurement:
    return Measurement(
        benchmark=BENCHMARK,
        subject=subject,
        metric="throughput",
        value=rows / seconds,
        unit="rows/s",
        higher_is_better=True,
        baseline=None if subject == NATIVE else NATIVE,
        note=f"{note}; best of 3: {seconds:.3f} s for {rows:,} rows",
    )


def sink(df: DataFrame) -> None:
    """Evaluate every row and column of df, writing nothing."""
    df.write.format("noop").mode("overwrite").save()


def check_same_scores(
    frame: DataFrame, model: Broadcast[bytes], usecase: UseCase, expected: np.ndarray
) -> None:
    """prescore must score the same rows to the same values as the baseline, or the race is void."""
    from pyspark.sql import functions as F

    scored = score_frame(frame, model=model, model_key=BENCHMARK, usecase=usecase)
    count, total = scored.agg(F.count("*"), F.sum(SCORE)).first()  # type: ignore[misc]
    want = float(expected.sum(dtype=np.float64))
    if count != len(expected) or not math.isclose(total, want, rel_tol=1e-6):
        raise RuntimeError(
            f"prescore scored {count} rows summing to {total}, native {len(expected)} to {want}"
        )


def prescore_subjects(
    spark: SparkSession, frame: DataFrame, model: Broadcast[bytes], usecase: UseCase, rows: int
) -> list[Measurement]:
    """score_frame with the configured Arrow batch size, then with each of LARGER_BATCHES."""
    configured = spark.conf.get(ARROW_BATCH)
    scored = score_frame(frame, model=model, model_key=BENCHMARK, usecase=usecase)
    out = [measure(PRESCORE, rows, best_of(lambda: sink(scored)), f"{ARROW_BATCH}={configured}")]
    try:
        for batch in LARGER_BATCHES:
            spark.conf.set(ARROW_BATCH, str(batch))
            seconds = best_of(lambda: sink(scored))
            out.append(
                measure(f"{PRESCORE}, batch {batch:,}", rows, seconds, f"{ARROW_BATCH}={batch}")
            )
    finally:
        spark.conf.set(ARROW_BATCH, str(configured))
    return out


def xgboost_spark_subject(frame: DataFrame, model: Any, usecase: UseCase, rows: int) -> Measurement:
    """xgboost.spark's own transform of the same model (one thread per task, as prescore)."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    estimator_cls = SparkXGBClassifier if usecase.task == "binary" else SparkXGBRegressor
    estimator = estimator_cls(features_col=usecase.features, **usecase.model.params)
    model.set_params(n_jobs=1)
    # What fit() returns, without refitting: the sklearn model wrapped, the estimator's params copied.
    peer = estimator._copyValues(estimator._pyspark_model_cls()(model))
    output = "probability" if usecase.task == "binary" else "prediction"
    scored = peer.transform(frame).select(*usecase.keys, output)
    return measure(
        "xgboost.spark transform", rows, best_of(lambda: sink(scored)), "model.transform"
    )


def mlflow_subject(
    spark: SparkSession, frame: DataFrame, booster: Any, usecase: UseCase, rows: int
) -> Measurement:
    """mlflow.pyfunc.spark_udf over the same booster saved as an MLflow model (no tracking server)."""
    import mlflow.pyfunc
    import mlflow.xgboost
    import xgboost
    from pyspark.sql import functions as F

    path = DATA_DIR / "score-mlflow-model"
    shutil.rmtree(path, ignore_errors=True)
    # Explicit requirements: inferring them would load the model in a subprocess.
    mlflow.xgboost.save_model(
        booster, str(path), pip_requirements=[f"xgboost=={xgboost.__version__}"]
    )
    udf = mlflow.pyfunc.spark_udf(spark, str(path), result_type="double", env_manager="local")
    scored = frame.transform(as_model_input, features=usecase.features).select(
        *usecase.keys, udf(F.struct(*usecase.features)).alias(SCORE)
    )
    return measure("mlflow spark_udf", rows, best_of(lambda: sink(scored)), "pyfunc.spark_udf")


# ---------------------------------------------------------------- run


def run(size: str) -> list[Measurement]:
    settings = load_settings(env="test")
    usecase = load_usecase("churn", settings)
    spark = get_spark(settings)
    clean = clean_table(spark, usecase, size)
    matrix, labels = model_matrix(clean, usecase)
    model = train_model(matrix, labels, usecase)
    raw_model = bytes(model.get_booster().save_raw("ubj"))

    native = load_booster(raw_model)  # as the score stage loads it, then all cores in one call
    native.set_param({"nthread": CORES})
    rows = len(matrix)
    results = [
        measure(NATIVE, rows, best_of(lambda: native.inplace_predict(matrix)), f"nthread={CORES}")
    ]

    frame = spark.read.parquet(str(clean)).repartition(PARTITIONS).cache()
    broadcast = spark.sparkContext.broadcast(raw_model)
    try:
        frame.count()  # materialise the cache outside the timings
        check_same_scores(frame, broadcast, usecase, native.inplace_predict(matrix))
        results += prescore_subjects(spark, frame, broadcast, usecase, rows)
        results.append(xgboost_spark_subject(frame, model, usecase, rows))
        results.append(mlflow_subject(spark, frame, native, usecase, rows))
    finally:
        broadcast.unpersist()
        frame.unpersist()
        spark.stop()
    return results
