"""Train: clean train/validation split -> (search) -> xgboost.spark fit -> test metrics -> gate.

A time-series use case trains on the supervised frame of its clean history (prescore.training.timeseries):
one row per series, origin day and horizon, split on the target day.

One MLflow run per training: params, the clean table version as its input, test metrics and the
champion's on the same test split, plots, and the model package (the booster in native format
with the preprocessing fitted on the train split: training.package) as a pyfunc, registered. Every new
version becomes @challenger; the promotion gate (`model.promotion`) moves @champion to it only if
it meets the minimum and beats the champion by the margin. The gate's decision and reason are the
run's tags. Bad data stops the stage before anything is logged or registered, so a failed training
never touches @champion.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prescore.catalog import TARGET_DATE
from prescore.config import PROJECT_ROOT
from prescore.data.cleaning import assign_split
from prescore.platform import registry, tables
from prescore.platform.imports import imported_meanwhile
from prescore.training import evaluation, promotion, timeseries, tuning
from prescore.training.estimator import (
    check_training_data,
    fit_package,
    fitted_preprocessing,
    split_frame,
    test_frame,
    training_frame,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from prescore.config import UseCase
    from prescore.context import RunContext
    from prescore.training.package import Package

# mlflow and xgboost are imported inside the functions that use them: importing them takes
# seconds, which the CLI's other commands, the lookups and the DAG file never pay.
log = logging.getLogger(__name__)


def num_workers(ctx: RunContext) -> int:
    """`model.num_workers`, else one per core Spark has."""
    return ctx.usecase.model.num_workers or ctx.spark.sparkContext.defaultParallelism


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
    metric = usecase.model.promotion.metric
    if metric not in evaluation.task_metrics(usecase):
        raise ValueError(
            f"use case {usecase.name!r}: model.promotion.metric {metric!r} is not a metric of "
            f"task {usecase.task!r} ({', '.join(evaluation.task_metrics(usecase))})"
        )
    clean_version = tables.latest_version(settings, usecase.clean_table)
    # Finding the rows is a fresh process's first wait on Spark: MLflow and XGBoost import
    # meanwhile.
    with imported_meanwhile("mlflow", "xgboost"):
        clean = model_rows(ctx, clean_version).cache()
    try:
        split_rows = check_training_data(clean, usecase=usecase)
        return train_and_register(ctx, clean, clean_version, split_rows)
    finally:
        clean.unpersist()


def model_rows(ctx: RunContext, clean_version: int) -> DataFrame:
    """The labelled rows to train on, with their split: the clean run date, or for a time series
    the supervised frame of its history, split on the target day."""
    usecase = ctx.usecase
    if usecase.time_series is None:
        return tables.read_run(
            ctx.spark, ctx.settings, usecase.clean_table, ctx.run_date, clean_version
        )
    history = timeseries.read_history(
        ctx.spark,
        ctx.settings,
        usecase,
        ctx.run_date,
        days=usecase.time_series.history_days,
        version=clean_version,
    )
    return timeseries.supervised_frame(history, usecase=usecase, run_date=ctx.run_date).transform(
        assign_split,
        keys=usecase.published_keys,
        split=usecase.split,
        event_time=TARGET_DATE,
        run_date=ctx.run_date,
    )


def champion_metrics(
    ctx: RunContext, test: pd.DataFrame
) -> tuple[registry.ModelRef | None, dict[str, float] | None, str, str]:
    """The current champion, its metrics on this test split (through its own package), a note
    when it cannot be scored, and how its features differ from the use case's (both "" when they
    do not)."""
    settings, usecase = ctx.settings, ctx.usecase
    if not registry.has_alias(settings, usecase, registry.CHAMPION):
        return None, None, "", ""
    ref = registry.resolve_alias(settings, usecase, registry.CHAMPION)
    trained = registry.trained_features(settings, ref)
    changed = "" if trained is None else promotion.feature_change(trained, usecase.features)
    if changed:  # scoring its columns by position would be wrong, or fail: not comparable
        log.warning("train: champion v%s was trained on other features: %s", ref.version, changed)
        return ref, None, "", changed
    try:
        package = registry.load_package(ref)
        return ref, evaluation.metrics(package, test, usecase=usecase), "", ""
    except Exception as exc:  # e.g. a bare booster, registered before model packages
        note = f"champion v{ref.version} cannot be scored on this test split: {exc}"
        return ref, None, note, ""


def gate(
    ctx: RunContext, metrics: dict[str, float], test: pd.DataFrame
) -> tuple[registry.ModelRef | None, dict[str, float] | None, promotion.Decision]:
    """The champion, its metrics on the same test split, and the promotion gate's decision."""
    champion, incumbent, note, changed = champion_metrics(ctx, test)
    decision = promotion.gate(
        metrics,
        incumbent,
        unscorable=note,
        settings=ctx.usecase.model.promotion,
        champion_version=champion.version if champion else None,
        other_features=changed,
    )
    return champion, None if note or changed else incumbent, decision


def chosen_params(
    fit: Callable[[dict[str, Any]], Any], clean: DataFrame, *, usecase: UseCase
) -> dict[str, Any]:
    """`model.params`, or the best trial's when the search is on (trials logged as nested runs)."""
    import mlflow

    if not usecase.model.tuning.n_trials:
        return dict(usecase.model.params)
    validation = split_frame(clean, usecase=usecase, split="validation").toPandas()
    params, study = tuning.search(fit, validation, usecase=usecase)
    mlflow.set_tags(
        {"tuning_trials": str(len(study.trials)), "tuning_best_trial": str(study.best_trial.number)}
    )
    return params


def train_and_register(
    ctx: RunContext, clean: DataFrame, clean_version: int, split_rows: dict[str, int]
) -> dict[str, object]:
    """Search (if on), fit, evaluate against the champion, log one MLflow run, register, gate."""
    import mlflow

    usecase, settings = ctx.usecase, ctx.settings
    registry.client(settings)
    workers = num_workers(ctx)
    preprocessing = fitted_preprocessing(clean, usecase=usecase)
    training = training_frame(clean, usecase=usecase, preprocessing=preprocessing)
    test = test_frame(clean, usecase=usecase).toPandas()

    def fit(params: dict[str, Any]) -> Package:
        return fit_package(
            training, usecase=usecase, preprocessing=preprocessing, params=params, workers=workers
        )

    with mlflow.start_run(
        experiment_id=registry.experiment_id(settings, usecase),
        run_name=f"{usecase.name}-{ctx.run_date.isoformat()}",
        tags=run_tags(ctx, clean_version),
    ) as run:
        log_input(ctx, clean, clean_version)
        params = chosen_params(fit, clean, usecase=usecase)
        mlflow.log_params(
            {**params, "num_workers": workers, registry.FEATURES_PARAM: ",".join(usecase.features)}
        )
        mlflow.log_params({f"rows_{k}": v for k, v in split_rows.items()})
        package = fit(params)
        metrics = evaluation.metrics(package, test, usecase=usecase)
        champion, incumbent, decision = gate(ctx, metrics, test)
        log_evaluation(package, test, ctx, metrics, incumbent, champion, decision)
        ref = log_model(ctx, package, test, run.info.run_id)
    registry.set_alias(settings, ref, registry.CHALLENGER)
    if decision.promote:
        registry.promote(settings, ref, reason=decision.reason, when=datetime.now(UTC).isoformat())
    alias = registry.CHAMPION if decision.promote else registry.CHALLENGER
    log.info("train: %s v%s @%s (%s) %s", ref.name, ref.version, alias, decision.reason, metrics)
    return {
        "model": ref.name,
        "version": ref.version,
        "alias": alias,
        "promoted": decision.promote,
        "reason": decision.reason,
        **metrics,
        "clean_version": clean_version,
    }


def run_tags(ctx: RunContext, clean_version: int) -> dict[str, str]:
    usecase = ctx.usecase
    return {
        "usecase": usecase.name,
        "task": usecase.task,
        "run_date": ctx.run_date.isoformat(),
        "git_commit": git_commit(),
        "clean_table": usecase.clean_table,
        "clean_table_version": str(clean_version),
    }


def log_input(ctx: RunContext, clean: DataFrame, clean_version: int) -> None:
    """The clean Delta table at the version read, as the run's training input. The source is
    named directly: MLflow's from_spark recognises a Delta table on the local disk only."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset import SparkDataset

    table = ctx.usecase.clean_table
    # The version as text, as from_spark passes it: MLflow leaves out a version that is falsy (0).
    version = str(clean_version)
    source = DeltaDatasetSource(
        path=str(ctx.settings.table_path(table)),
        delta_table_version=version,  # type: ignore[arg-type]
    )
    dataset = SparkDataset(
        df=clean,
        source=source,
        name=f"{table}@v{clean_version}",
        targets=ctx.usecase.label,
        digest=f"{table}-v{clean_version}-{ctx.run_date.isoformat()}",
    )
    mlflow.log_input(dataset, context="training", tags={"run_date": ctx.run_date.isoformat()})


def log_evaluation(
    package: Package,
    test: pd.DataFrame,
    ctx: RunContext,
    metrics: dict[str, float],
    incumbent: dict[str, float] | None,
    champion: registry.ModelRef | None,
    decision: promotion.Decision,
) -> None:
    """Test metrics, the champion's on the same split, plots, and the gate's decision."""
    import mlflow

    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    if incumbent is not None:
        mlflow.log_metrics({f"champion_test_{k}": v for k, v in incumbent.items()})
    gate = ctx.usecase.model.promotion
    mlflow.set_tags(
        {
            "promotion_metric": gate.metric,
            "promotion_margin": str(gate.margin),
            "promotion_minimum": str(gate.minimum),
            "promotion_decision": "promote" if decision.promote else "keep_champion",
            "promotion_reason": decision.reason,
            "compared_with_champion": champion.version if champion else "none",
        }
    )
    for name, figure in evaluation.plots(package, test, usecase=ctx.usecase).items():
        mlflow.log_figure(figure, f"plots/{name}")


def log_model(
    ctx: RunContext, package: Package, test: pd.DataFrame, run_id: str
) -> registry.ModelRef:
    """The package as a pyfunc (signature on the clean columns, five test rows as its input
    example); registered."""
    import tempfile
    from pathlib import Path

    from prescore.training.pyfunc import log_package

    name = registry.model_name(ctx.settings, ctx.usecase)
    with tempfile.TemporaryDirectory() as folder:
        info = log_package(
            package,
            folder=Path(folder),
            registered_model_name=name,
            input_example=test[[c for c in package.preprocessing.inputs if c in test]].head(5),
        )
    return registry.ModelRef(name=name, version=str(info.registered_model_version), run_id=run_id)
