"""Test-split metrics and diagnostic plots of a model package, computed on the driver.

A split is small next to the table (`split.test` of the rows) and is collected once as a pandas
frame of clean rows; the challenger and the champion each score that same frame through their own
package (its preprocessing, then `Booster.inplace_predict`, as the score stage does), so their
metrics are comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from prescore.config import BINARY_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from prescore.config import UseCase
    from prescore.training.package import Package


def predict(package: Package, frame: pd.DataFrame) -> np.ndarray:
    """Scores of one package on clean rows: probabilities for binary, values for regression."""
    return package.predict(frame)


def binary_metrics(y: np.ndarray, p: np.ndarray, *, threshold: float) -> dict[str, float]:
    """AUC, PR-AUC (average precision), log loss, and accuracy and F1 at `threshold`."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    predicted = (p >= threshold).astype(int)
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and MAPE (a fraction; labels of 0 count with a denominator of 1e-9, as sklearn)."""
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error

    return {
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "mae": float(mean_absolute_error(y, p)),
        "mape": float(mean_absolute_percentage_error(y, p)),
    }


def metrics(package: Package, frame: pd.DataFrame, *, usecase: UseCase) -> dict[str, float]:
    """The task's metrics of `package` on one split (`frame` holds the features and the label)."""
    y = frame[usecase.label].to_numpy(dtype=np.float64)
    p = predict(package, frame)
    if usecase.task == "binary":
        return binary_metrics(y, p, threshold=usecase.model.threshold)
    return regression_metrics(y, p)


def task_metrics(usecase: UseCase) -> tuple[str, ...]:
    return BINARY_METRICS if usecase.task == "binary" else REGRESSION_METRICS


def is_better(metric: str, value: float, than: float, *, margin: float = 0.0) -> bool:
    """`value` beats `than` by at least `margin`, in the metric's direction."""
    if metric in LOWER_IS_BETTER:
        return value <= than - margin
    return value >= than + margin


# ---------------------------------------------------------------- plots


def plots(package: Package, frame: pd.DataFrame, *, usecase: UseCase) -> dict[str, Figure]:
    """Figures to log as artifacts, by file name: importance, and ROC/PR/calibration or residuals."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a driver
    y = frame[usecase.label].to_numpy(dtype=np.float64)
    p = predict(package, frame)
    figures = {
        "feature_importance.png": importance_plot(package.booster, features=package.features)
    }
    if usecase.task == "binary":
        figures |= {
            "roc_curve.png": roc_plot(y, p),
            "pr_curve.png": pr_plot(y, p),
            "calibration.png": calibration_plot(y, p),
        }
    else:
        figures["residuals.png"] = residuals_plot(y, p)
    return figures


def importance_plot(booster: Any, *, features: list[str]) -> Figure:
    """Total gain per feature (features never used in a split show 0)."""
    from matplotlib.figure import Figure

    gain = booster.get_score(importance_type="total_gain")
    # Boosters fitted on an unnamed matrix call the features f0, f1, ...
    values = [gain.get(name, gain.get(f"f{i}", 0.0)) for i, name in enumerate(features)]
    order = np.argsort(values)
    fig = Figure(figsize=(6, 0.35 * len(features) + 1.5))
    ax = fig.subplots()
    ax.barh([features[i] for i in order], [values[i] for i in order])
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return fig


def roc_plot(y: np.ndarray, p: np.ndarray) -> Figure:
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test split)")
    ax.legend(loc="lower right")
    return fig


def pr_plot(y: np.ndarray, p: np.ndarray) -> Figure:
    from matplotlib.figure import Figure
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, p)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(recall, precision, label=f"AP {average_precision_score(y, p):.3f}")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test split)")
    ax.legend(loc="upper right")
    return fig


def calibration_plot(y: np.ndarray, p: np.ndarray) -> Figure:
    from matplotlib.figure import Figure
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(predicted, observed, marker="o")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration (test split)")
    return fig


def residuals_plot(y: np.ndarray, p: np.ndarray) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(p, y - p, s=4, alpha=0.4)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set(xlabel="predicted", ylabel="label - predicted", title="Residuals (test split)")
    return fig
