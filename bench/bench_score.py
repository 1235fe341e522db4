"""Score stage throughput: prescore's `score_frame` in local Spark against native XGBoost.

Same rows, same model, same run. Churn rows from prescore.demo.datagen go through the clean stage's
transforms once (cached under bench/.data/); the package's preprocessing is fitted on them and a
small booster is trained natively on a sample. Then, in rows per second, best of 3 after a warm-up:

- baseline: `Booster.inplace_predict` over the whole float32 matrix, already preprocessed, one
  process, nthread = cores;
- prescore: `score_frame` over a cached DataFrame of the same clean rows in local[cores] (so the
  package's preprocessing is inside what is timed), written to Spark's no-op sink, with the Arrow
  batch size as configured and with larger batches;
- prescore with reasons (`score.explain`, top 3), approximate and exact contributions, against
  the same stage without them;
- peers on the same cached frame, preprocessed first (not timed): xgboost.spark's model transform
  and mlflow.pyfunc.spark_udf over the bare booster.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench import DATA_DIR, Measurement, best_times
from prescore.catalog import SCORE
from prescore.config import ExplainSettings, load_settings, load_usecase
from prescore.data.cleaning import clean_rows
from prescore.demo.datagen import churn_chunks
from prescore.platform import tables
from prescore.platform.spark import get_spark
from prescore.scoring.predict import score_frame, scorer
from prescore.training.package import Package, Preprocessing, fit_preprocessing, preprocessed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import Settings, UseCase

BENCHMARK = "score"
ROWS = {"small": 200_000, "full": 10_000_000}
TRAIN_ROWS = 50_000
CORES = 2  # local[2] (conf/env/test.yaml) and the baseline's nthread
DRIVER_MEMORY = "4g"  # local mode: the cached frame lives in the driver's heap (default 1g)
RUN_DATE = date(2024, 1, 1)
SEED = 42
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
LARGER_BATCHES = (50_000,)  # tried on top of the configured value (Spark's default: 10,000)
NATIVE = "native inplace_predict"
PRESCORE = "prescore score_frame"
WITH_REASONS = f"{PRESCORE} with reasons"
EXPLAIN = {"approximate": True, "exact": False}  # subject suffix -> ExplainSettings.approximate


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
    root = DATA_DIR / f"score-{size}-v2"  # v2: clean keeps missing values and levels as text
    clean = root / "clean"
    if not (clean / "_SUCCESS").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_valid_rows(usecase, ROWS[size], root / "raw")
        from pyspark.sql import functions as F

        raw = spark.read.parquet(str(root / "raw")).withColumn(tables.RUN_DATE, F.lit(RUN_DATE))
        clean_rows(raw, usecase=usecase, secret=b"bench-only").write.parquet(str(clean))
        shutil.rmtree(root / "raw")  # only the clean rows are read again
    return clean


def model_matrix(
    clean: Path, preprocessing: Preprocessing, usecase: UseCase
) -> tuple[np.ndarray, np.ndarray]:
    """The features as the booster's float32 matrix (the package's preprocessing) and the labels."""
    table = pq.read_table(clean, columns=[*usecase.features, usecase.label])
    matrix = preprocessing.matrix({f: table.column(f) for f in usecase.features})
    return matrix, table.column(usecase.label).to_numpy()


def train_model(matrix: np.ndarray, labels: np.ndarray, usecase: UseCase) -> Any:
    """A native XGBoost model with the use case's parameters, on a sample (not what is measured)."""
    import xgboost

    estimator = xgboost.XGBClassifier if usecase.task == "binary" else xgboost.XGBRegressor
    model = estimator(**usecase.model.params, n_jobs=CORES)
    model.fit(matrix[:TRAIN_ROWS], labels[:TRAIN_ROWS])
    return model


# ---------------------------------------------------------------- subjects


def sink(df: DataFrame) -> None:
    """Evaluate every row and column of df, writing nothing."""
    df.write.format("noop").mode("overwrite").save()


def scoring(spark: SparkSession, df: DataFrame, arrow_batch: str) -> Callable[[], None]:
    """One timed call: df fully evaluated with this Arrow batch size (the subjects take turns)."""

    def evaluate() -> None:
        spark.conf.set(ARROW_BATCH, arrow_batch)
        sink(df)

    return evaluate


def check_same_scores(scored: DataFrame, expected: np.ndarray) -> None:
    """prescore must score the same rows to the same values as the baseline, or the race is void."""
    from pyspark.sql import functions as F

    count, total = scored.agg(F.count("*"), F.sum(SCORE)).first()  # type: ignore[misc]
    want = float(expected.sum(dtype=np.float64))
    if count != len(expected) or not math.isclose(total, want, rel_tol=1e-6):
        raise RuntimeError(
            f"prescore scored {count} rows summing to {total}, native {len(expected)} to {want}"
        )


def xgboost_spark_scores(frame: DataFrame, model: Any, usecase: UseCase) -> DataFrame:
    """xgboost.spark's own transform of the same model, one thread per task as in prescore."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    estimator_cls = SparkXGBClassifier if usecase.task == "binary" else SparkXGBRegressor
    estimator = estimator_cls(features_col=usecase.features, **usecase.model.params)
    model.set_params(n_jobs=1)
    # What fit() returns, without refitting: the sklearn model wrapped, the estimator's params copied.
    peer = estimator._copyValues(estimator._pyspark_model_cls()(model))
    output = "probability" if usecase.task == "binary" else "prediction"
    return peer.transform(frame).select(*usecase.keys, output)


def mlflow_scores(
    spark: SparkSession, features: DataFrame, package: Package, usecase: UseCase
) -> DataFrame:
    """mlflow.pyfunc.spark_udf over the same booster saved as an MLflow model (no tracking server)."""
    import mlflow.pyfunc
    import mlflow.xgboost
    import xgboost
    from pyspark.sql import functions as F

    path = DATA_DIR / "score-mlflow-model"
    shutil.rmtree(path, ignore_errors=True)
    # Explicit requirements: inferring them would load the model in a subprocess.
    mlflow.xgboost.save_model(
        package.booster, str(path), pip_requirements=[f"xgboost=={xgboost.__version__}"]
    )
    udf = mlflow.pyfunc.spark_udf(spark, str(path), result_type="double", env_manager="local")
    return features.select(*usecase.keys, udf(F.struct(*usecase.features)).alias(SCORE))


def measure(subject: str, rows: int, seconds: float, note: str) -> Measurement:
    baseline = PRESCORE if subject.startswith(WITH_REASONS) else NATIVE
    return Measurement(
        benchmark=BENCHMARK,
        subject=subject,
        metric="throughput",
        value=rows / seconds,
        unit="rows/s",
        higher_is_better=True,
        baseline=None if subject == NATIVE else baseline,
        note=f"{note}; best: {seconds:.3f} s for {rows:,} rows",
    )


# ---------------------------------------------------------------- run


def bench_settings() -> Settings:
    """conf/base.yaml + conf/env/test.yaml (local[2]), with room in the driver for the cache."""
    settings = load_settings(env="test")
    conf = {**settings.spark.conf, "spark.driver.memory": DRIVER_MEMORY}
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"conf": conf})})


def measure_subjects(
    spark: SparkSession,
    clean: Path,
    model: Any,
    preprocessing: Preprocessing,
    matrix: np.ndarray,
    usecase: UseCase,
) -> list[Measurement]:
    """Every subject over the same rows and model, timed in turns."""
    package = Package.from_parts(
        bytes(model.get_booster().save_raw("ubj")), preprocessing.to_json()
    )
    native = package.booster  # as the score stage loads it, then every core in one call
    native.set_param({"nthread": CORES})
    frame = spark.read.parquet(str(clean)).repartition(CORES).cache()
    features = frame.transform(preprocessed, preprocessing).cache()
    broadcast = scorer(spark, key=BENCHMARK, package=package)
    explained = {
        name: scorer(
            spark,
            key=BENCHMARK,
            package=package,
            explain=ExplainSettings(top_k=3, approximate=approximate),
        )
        for name, approximate in EXPLAIN.items()
    }
    try:
        frame.count()  # fill the caches outside the timings
        features.count()
        scored = score_frame(frame, model=broadcast, usecase=usecase)
        check_same_scores(scored, native.inplace_predict(matrix))
        configured = str(spark.conf.get(ARROW_BATCH))
        subjects: dict[str, tuple[Callable[[], object], str]] = {
            NATIVE: (lambda: native.inplace_predict(matrix), f"nthread={CORES}, one process"),
            PRESCORE: (scoring(spark, scored, configured), f"{ARROW_BATCH}={configured}"),
        }
        for batch in LARGER_BATCHES:
            subjects[f"{PRESCORE}, batch {batch:,}"] = (
                scoring(spark, scored, str(batch)),
                f"{ARROW_BATCH}={batch}",
            )
        for name, model_with_reasons in explained.items():
            reasons = score_frame(frame, model=model_with_reasons, usecase=usecase)
            subjects[f"{WITH_REASONS} ({name})"] = (
                scoring(spark, reasons, configured),
                f"score.explain top_k=3, {name} contributions; {ARROW_BATCH}={configured}",
            )
        subjects["xgboost.spark transform"] = (
            scoring(spark, xgboost_spark_scores(features, model, usecase), configured),
            "SparkXGBClassifierModel.transform, n_jobs=1",
        )
        subjects["mlflow spark_udf"] = (
            scoring(spark, mlflow_scores(spark, features, package, usecase), configured),
            "mlflow.pyfunc.spark_udf, env_manager=local",
        )
        seconds = best_times({name: action for name, (action, _) in subjects.items()})
    finally:
        for model_with_reasons in (broadcast, *explained.values()):
            model_with_reasons.parts.unpersist()
        features.unpersist()
        frame.unpersist()
    rows = len(matrix)
    return [measure(name, rows, seconds[name], note) for name, (_, note) in subjects.items()]


def run(size: str) -> list[Measurement]:
    settings = bench_settings()
    usecase = load_usecase("churn", settings)
    spark = get_spark(settings)
    try:
        clean = clean_table(spark, usecase, size)
        preprocessing = fit_preprocessing(spark.read.parquet(str(clean)), usecase=usecase)
        matrix, labels = model_matrix(clean, preprocessing, usecase)
        model = train_model(matrix, labels, usecase)
        return measure_subjects(spark, clean, model, preprocessing, matrix, usecase)
    finally:
        spark.stop()
