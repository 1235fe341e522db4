"""Train: clean train/validation split -> xgboost.spark fit -> test metrics -> MLflow run + version.

The first registered version becomes @champion; later versions become @challenger (the promotion
gate that may move @champion is the training issue's work).
"""

from __future__ import annotations

import logging
import subprocess
from typing import TYPE_CHECKING, Any

from prescore import registry, tables
from prescore.config import PROJECT_ROOT
from prescore.features import as_model_input
from prescore.stages.clean import SPLIT

if TYPE_CHECKING:
    from pyspark.ml import Model
    from pyspark.sql import DataFrame

    from prescore.config import UseCase
    from prescore.context import RunContext

log = logging.getLogger(__name__)
IS_VALIDATION = "_is_validation"


class TrainingDataError(ValueError):
    """The clean data cannot train a trustworthy model (too few rows, constant label, ...)."""


def training_frame(clean: DataFrame, *, usecase: UseCase) -> DataFrame:
    """Train + validation rows with a labelled validation indicator, features as model input."""
    from pyspark.sql import functions as F

    return (
        clean.where(F.col(SPLIT).isin("train", "validation") & F.col(usecase.label).isNotNull())
        .withColumn(IS_VALIDATION, F.col(SPLIT) == "validation")
        .transform(as_model_input, features=usecase.features)
    )


def test_frame(clean: DataFrame, *, usecase: UseCase) -> DataFrame:
    from pyspark.sql import functions as F

    return clean.where((F.col(SPLIT) == "test") & F.col(usecase.label).isNotNull()).transform(
        as_model_input, features=usecase.features
    )


def check_training_data(clean: DataFrame, *, usecase: UseCase) -> dict[str, int]:
    """Refuse data that cannot train: too few test rows, a constant label or an all-null feature."""
    from pyspark.sql import functions as F

    aggregates = [
        F.count(F.when(F.col(SPLIT) == s, 1)).alias(s) for s in ("train", "validation", "test")
    ]
    aggregates += [F.countDistinct(usecase.label).alias("label_values")]
    aggregates += [F.count(c).alias(f"nonnull_{c}") for c in usecase.features]
    stats = clean.agg(*aggregates).first().asDict()  # type: ignore[union-attr]
    where = f"{usecase.clean_table} run_date"
    if stats["test"] < usecase.model.min_test_rows or stats["train"] < usecase.model.min_test_rows:
        raise TrainingDataError(
            f"{where}: too few rows to train (train={stats['train']}, test={stats['test']}, "
            f"need {usecase.model.min_test_rows} in each)"
        )
    if stats["label_values"] < 2:
        raise TrainingDataError(f"{where}: label {usecase.label!r} is constant or missing")
    empty = [c for c in usecase.features if stats[f"nonnull_{c}"] == 0]
    if empty:
        raise TrainingDataError(f"{where}: feature(s) {empty} are null on every row")
    return {s: stats[s] for s in ("train", "validation", "test")}


def build_estimator(usecase: UseCase) -> Any:
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    estimator = SparkXGBClassifier if usecase.task == "binary" else SparkXGBRegressor
    return estimator(
        features_col=usecase.features,
        label_col=usecase.label,
        validation_indicator_col=IS_VALIDATION,
        num_workers=usecase.model.num_workers,
        missing=float("nan"),
        early_stopping_rounds=10,
        verbose_eval=False,
        **usecase.model.params,
    )


def evaluate(model: Model, test: DataFrame, *, usecase: UseCase) -> dict[str, float]:
    """Test-split metrics: AUC, PR-AUC and accuracy for binary; RMSE and MAE for regression."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator, RegressionEvaluator
    from pyspark.sql import functions as F

    scored = model.transform(test).cache()
    try:
        if usecase.task == "regression":
            regression = RegressionEvaluator(labelCol=usecase.label, predictionCol="prediction")
            return {
                m: regression.evaluate(scored, {regression.metricName: m}) for m in ("rmse", "mae")
            }
        evaluator = BinaryClassificationEvaluator(
            labelCol=usecase.label, rawPredictionCol="probability"
        )
        metrics = {
            "auc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderROC"}),
            "pr_auc": evaluator.evaluate(scored, {evaluator.metricName: "areaUnderPR"}),
        }
        correct = (F.col("prediction") == F.col(usecase.label)).cast("double")
        metrics["accuracy"] = float(scored.agg(F.avg(correct)).first()[0])  # type: ignore[index]
        return metrics
    finally:
        scored.unpersist()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def run(ctx: RunContext) -> dict[str, object]:
    usecase, settings = ctx.usecase, ctx.settings
    clean_version = tables.latest_version(ctx.spark, settings, usecase.clean_table)
    clean = tables.read_run(
        ctx.spark, settings, usecase.clean_table, ctx.run_date, clean_version
    ).cache()
    try:
        split_rows = check_training_data(clean, usecase=usecase)
        model = build_estimator(usecase).fit(training_frame(clean, usecase=usecase))
        metrics = evaluate(model, test_frame(clean, usecase=usecase), usecase=usecase)
        sample = test_frame(clean, usecase=usecase).select(*usecase.features).limit(5).toPandas()
    finally:
        clean.unpersist()
    ref = log_and_register(ctx, model.get_booster(), sample, metrics, clean_version, split_rows)
    alias = (
        registry.CHAMPION
        if not registry.has_alias(settings, usecase, registry.CHAMPION)
        else registry.CHALLENGER
    )
    registry.set_alias(settings, ref, alias)
    log.info("train: %s v%s @%s %s", ref.name, ref.version, alias, metrics)
    return {
        "model": ref.name,
        "version": ref.version,
        "alias": alias,
        **metrics,
        "clean_version": clean_version,
    }


def log_and_register(
    ctx: RunContext,
    booster: Any,
    sample: Any,
    metrics: dict[str, float],
    clean_version: int,
    split_rows: dict[str, int],
) -> registry.ModelRef:
    """One MLflow run: params, metrics, lineage tags, the booster in native format; registered."""
    import mlflow
    from mlflow.models import infer_signature

    usecase, settings = ctx.usecase, ctx.settings
    registry.client(settings)
    name = registry.model_name(settings, usecase)
    tags = {
        "usecase": usecase.name,
        "run_date": ctx.run_date.isoformat(),
        "git_commit": git_commit(),
        "clean_table": usecase.clean_table,
        "clean_table_version": str(clean_version),
    }
    with mlflow.start_run(
        experiment_id=registry.experiment_id(settings, usecase), tags=tags
    ) as run:
        mlflow.log_params({**usecase.model.params, "num_workers": usecase.model.num_workers})
        mlflow.log_params(
            {
                "features": ",".join(usecase.features),
                **{f"rows_{k}": v for k, v in split_rows.items()},
            }
        )
        mlflow.log_metrics(metrics)
        predictions = booster.inplace_predict(sample.to_numpy(dtype="float32"))
        info = mlflow.xgboost.log_model(
            booster,
            name="model",
            signature=infer_signature(sample, predictions),
            input_example=sample,
            registered_model_name=name,
        )
    return registry.ModelRef(
        name=name, version=str(info.registered_model_version), run_id=run.info.run_id
    )
