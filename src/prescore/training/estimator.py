"""The training rows and the estimator: the splits, data checks, the xgboost.spark fit.

Grain in: the clean rows of a run date (or a time series' supervised frame), one per key, with
their `split`. The package's preprocessing is fitted on the train split, the booster on the train
and validation splits through that preprocessing (distributed over `workers` xgboost.spark
workers, early stopping on the validation split); the result is one `Package`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prescore.catalog import SPLIT
from prescore.training.package import Package, Preprocessing, fit_preprocessing, preprocessed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from prescore.config import UseCase

IS_VALIDATION = "_is_validation"
SPLITS = ("train", "validation", "test")


class TrainingDataError(ValueError):
    """The clean data cannot train a trustworthy model (too few rows, constant label, ...)."""


def fitted_preprocessing(clean: DataFrame, *, usecase: UseCase) -> Preprocessing:
    """The package's preprocessing, fitted on the train split (labelled or not)."""
    from pyspark.sql import functions as F

    return fit_preprocessing(clean.where(F.col(SPLIT) == "train"), usecase=usecase)


def training_frame(
    clean: DataFrame, *, usecase: UseCase, preprocessing: Preprocessing
) -> DataFrame:
    """Train + validation rows with a labelled validation indicator, features as the booster's
    input (`preprocessing` applied)."""
    from pyspark.sql import functions as F

    labelled = clean.where(
        F.col(SPLIT).isin("train", "validation") & F.col(usecase.label).isNotNull()
    )
    return (
        labelled.select(*usecase.features, usecase.label, SPLIT)
        .withColumn(IS_VALIDATION, F.col(SPLIT) == "validation")
        .transform(preprocessed, preprocessing)
    )


def split_frame(clean: DataFrame, *, usecase: UseCase, split: str) -> DataFrame:
    """One split's labelled rows as clean holds them: the features, the source columns a derived
    feature reads (the model's raw input: its input example, its parity tests) and the label."""
    from pyspark.sql import functions as F

    sources = [
        c for f in usecase.features if f in usecase.derive for c in usecase.derive[f].columns
    ]
    columns = dict.fromkeys([*usecase.features, *(c for c in sources if c in clean.columns)])
    return clean.where((F.col(SPLIT) == split) & F.col(usecase.label).isNotNull()).select(
        *columns, usecase.label
    )


def test_frame(clean: DataFrame, *, usecase: UseCase) -> DataFrame:
    return split_frame(clean, usecase=usecase, split="test")


def check_training_data(clean: DataFrame, *, usecase: UseCase) -> dict[str, int]:
    """Refuse data that cannot train: too few rows in a split, a missing or constant label, a
    feature null on every row, a binary label outside 0/1 or a class absent from a split."""
    from pyspark.sql import functions as F

    label, is_labelled = F.col(usecase.label), F.col(usecase.label).isNotNull()
    aggregates = [F.count(F.when((F.col(SPLIT) == s) & is_labelled, 1)).alias(s) for s in SPLITS]
    aggregates += [F.countDistinct(label).alias("label_values")]
    aggregates += [F.count(c).alias(f"nonnull_{c}") for c in usecase.features]
    if usecase.task == "binary":
        aggregates += [F.count(F.when(~label.isin(0, 1), 1)).alias("not_binary")]
        aggregates += [
            F.count(F.when((F.col(SPLIT) == s) & (label == k), 1)).alias(f"{s}_{k}")
            for s in SPLITS
            for k in (0, 1)
        ]
    stats = clean.agg(*aggregates).first().asDict()  # type: ignore[union-attr]
    where, need = f"{usecase.clean_table} run_date", usecase.model.min_test_rows
    if stats["label_values"] == 0:
        raise TrainingDataError(f"{where}: label {usecase.label!r} is missing (null on every row)")
    short = {s: stats[s] for s in SPLITS if stats[s] < need}
    if short:
        raise TrainingDataError(
            f"{where}: too few labelled rows to train in split(s) {short} "
            f"(model.min_test_rows: need {need} in each)"
        )
    if stats["label_values"] < 2:
        raise TrainingDataError(f"{where}: label {usecase.label!r} is constant")
    empty = [c for c in usecase.features if stats[f"nonnull_{c}"] == 0]
    if empty:
        raise TrainingDataError(f"{where}: feature(s) {empty} are null on every row")
    if usecase.task == "binary":
        if stats["not_binary"]:
            raise TrainingDataError(
                f"{where}: label {usecase.label!r} has {stats['not_binary']} value(s) "
                "other than 0 and 1 (task: binary)"
            )
        absent = [f"{k} in {s}" for s in SPLITS for k in (0, 1) if stats[f"{s}_{k}"] == 0]
        if absent:
            raise TrainingDataError(
                f"{where}: label {usecase.label!r} has no examples of class {', '.join(absent)}"
            )
    return {s: stats[s] for s in SPLITS}


def build_estimator(usecase: UseCase, *, params: dict[str, Any], workers: int) -> Any:
    """xgboost.spark estimator: features as a list of numeric columns, early stopping on the
    validation split, seed 0 unless the params set one."""
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    estimator = SparkXGBClassifier if usecase.task == "binary" else SparkXGBRegressor
    return estimator(
        features_col=usecase.features,
        label_col=usecase.label,
        validation_indicator_col=IS_VALIDATION,
        num_workers=workers,
        missing=float("nan"),
        early_stopping_rounds=usecase.model.early_stopping_rounds,
        verbose_eval=False,
        **{"seed": 0, **params},
    )


def fit_package(
    training: DataFrame,
    *,
    usecase: UseCase,
    preprocessing: Preprocessing,
    params: dict[str, Any],
    workers: int,
) -> Package:
    """The fitted booster, cut at the best validation round when early stopping ended the fit,
    with the preprocessing its input went through."""
    model = build_estimator(usecase, params=params, workers=workers).fit(training)
    booster = model.get_booster()
    best = booster.attr("best_iteration")
    return Package(preprocessing, booster[: int(best) + 1] if best is not None else booster)
