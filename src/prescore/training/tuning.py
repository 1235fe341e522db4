"""Hyperparameter search: Optuna (TPE, seeded) over the use case's search space.

Each trial fits on the train split, early-stops and is scored on the validation split (the test
split stays untouched for the final evaluation), and is logged as a nested MLflow run under the
training run. The best trial's parameters are returned for the final fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prescore.config import LOWER_IS_BETTER
from prescore.training import evaluation

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from prescore.config import SearchRange, UseCase

log = logging.getLogger(__name__)
Params = dict[str, float | int | str]


def suggest(trial: optuna.Trial, space: dict[str, SearchRange]) -> Params:
    """One point of the search space."""
    params: Params = {}
    for name, r in space.items():
        if r.type == "int":
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


def search(
    fit: Callable[[Params], Any],
    validation: pd.DataFrame,
    *,
    usecase: UseCase,
) -> tuple[Params, optuna.Study]:
    """Best parameters (the use case's `params` overlaid by the best trial's) and the study.

    `fit(params)` returns a fitted model package (training.package); each trial is a nested MLflow run of the active run.
    """
    import mlflow
    import optuna

    tuning, metric = usecase.model.tuning, usecase.model.promotion.metric
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("tuning.search runs its trials under an active MLflow run")
    experiment = parent.info.experiment_id  # nested runs go to the active experiment otherwise

    def objective(trial: optuna.Trial) -> float:
        params = {**usecase.model.params, **suggest(trial, tuning.search_space)}
        with mlflow.start_run(
            run_name=f"trial-{trial.number}", nested=True, experiment_id=experiment
        ):
            mlflow.set_tag("trial", str(trial.number))
            mlflow.log_params(params)
            scores = evaluation.metrics(fit(params), validation, usecase=usecase)
            mlflow.log_metrics({f"validation_{k}": v for k, v in scores.items()})
        log.info("tuning: trial %d %s=%.4f %s", trial.number, metric, scores[metric], params)
        return scores[metric]

    study = optuna.create_study(
        direction="minimize" if metric in LOWER_IS_BETTER else "maximize",
        sampler=optuna.samplers.TPESampler(seed=tuning.seed),
    )
    study.optimize(objective, n_trials=tuning.n_trials, timeout=tuning.timeout_seconds)
    return {**usecase.model.params, **study.best_trial.params}, study
