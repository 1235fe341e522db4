"""Train on the real xgboost.spark and MLflow: evaluation, the promotion gate, search, bad input.

One module state folder: 1,000 generated customers through ingest, validate and clean, then four
trainings on the same clean data with different gates, so each version's test metrics and the
champion's are comparable on the same test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import pytest
from mlflow import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prescore import cli
from prescore.catalog import SPLIT
from prescore.config import PromotionSettings, Settings, TuningSettings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_flow
from prescore.platform import registry, tables
from prescore.stages import train
from prescore.training.estimator import TrainingDataError, check_training_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUN_DATE = date(2026, 11, 2)
BAD_DATE = date(2026, 11, 3)


def with_model(usecase: UseCase, **changes: object) -> UseCase:
    return usecase.model_copy(update={"model": usecase.model.model_copy(update=changes)})


@dataclass
class Trained:
    settings: Settings
    usecase: UseCase
    ctx: RunContext
    runs: list[dict[str, object]]

    def mlflow_run(self, index: int):  # the MLflow run of the index-th training
        ref = registry.model_version(self.settings, self.usecase, str(self.runs[index]["version"]))
        return registry.client(self.settings).get_run(ref.run_id)


@pytest.fixture(scope="module")
def trained(spark: SparkSession, settings: Settings, churn: UseCase, tmp_path_factory) -> Trained:
    """Four trainings: default gate, an unreachable margin, margin 0, a search with a high bar."""
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("train")})
    write_landing(state, churn, RUN_DATE, rows=1000)
    run_flow(RunContext(state, churn, RUN_DATE, spark), ("ingest", "validate", "clean"))
    gate = churn.model.promotion
    search = TuningSettings(
        n_trials=2, seed=3, search_space=churn.model.tuning.search_space, timeout_seconds=None
    )
    variants = [
        churn,
        with_model(churn, promotion=gate.model_copy(update={"margin": 0.5})),
        with_model(churn, promotion=gate.model_copy(update={"margin": 0.0})),
        with_model(churn, promotion=gate.model_copy(update={"minimum": 0.999}), tuning=search),
    ]
    runs = [train.run(RunContext(state, u, RUN_DATE, spark)) for u in variants]
    # A regression on the same clean rows, registered under its own model name.
    regression = churn.model_copy(
        update={
            "task": "regression",
            "label": "total_charges",
            "numeric_features": [f for f in churn.numeric_features if f != "total_charges"],
            "model": churn.model.model_copy(update={"promotion": PromotionSettings(metric="rmse")}),
        }
    )
    other = state.model_copy(
        update={"mlflow": state.mlflow.model_copy(update={"registry_prefix": "regression"})}
    )
    runs.append(train.run(RunContext(other, regression, RUN_DATE, spark)))
    return Trained(state, churn, RunContext(state, churn, RUN_DATE, spark), runs)


def champion(t: Trained) -> str:
    return registry.resolve_alias(t.settings, t.usecase, registry.CHAMPION).version


def test_first_version_meeting_the_minimum_becomes_champion(trained: Trained) -> None:
    first = trained.runs[0]
    assert first["promoted"] is True
    assert "no champion yet" in str(first["reason"])
    assert float(first["auc"]) >= trained.usecase.model.promotion.minimum  # type: ignore[arg-type]
    tags = trained.mlflow_run(0).data.tags
    assert tags["promotion_decision"] == "promote"
    assert tags["compared_with_champion"] == "none"


def test_champion_is_scored_on_the_same_test_split(trained: Trained) -> None:
    """Run 2 trains on the same data as run 1: the champion's metrics it logs are run 1's own."""
    first, second = trained.mlflow_run(0).data.metrics, trained.mlflow_run(1).data.metrics
    for name in ("auc", "pr_auc", "log_loss", "accuracy", "f1"):
        assert second[f"champion_test_{name}"] == pytest.approx(first[f"test_{name}"], abs=1e-9)
    assert trained.mlflow_run(1).data.tags["compared_with_champion"] == trained.runs[0]["version"]


def test_challenger_not_better_by_the_margin_keeps_the_champion(trained: Trained) -> None:
    second = trained.runs[1]
    assert second["promoted"] is False
    assert "not better by 0.5" in str(second["reason"])
    tags = trained.mlflow_run(1).data.tags
    assert tags["promotion_decision"] == "keep_champion"
    assert tags["promotion_reason"] == second["reason"]


def test_same_data_and_params_give_the_same_metrics(trained: Trained) -> None:
    first, second = trained.runs[0], trained.runs[1]
    for name in ("auc", "pr_auc", "log_loss", "accuracy", "f1"):
        assert second[name] == pytest.approx(first[name], abs=1e-9)


def test_a_tie_with_margin_zero_is_promoted_and_recorded_in_the_history(trained: Trained) -> None:
    third = trained.runs[2]
    assert third["promoted"] is True
    history = registry.champion_history(trained.settings, trained.usecase)
    assert history[:2] == [trained.runs[0]["version"], third["version"]]


def test_a_challenger_below_the_minimum_is_not_promoted(trained: Trained) -> None:
    fourth = trained.runs[3]
    assert fourth["promoted"] is False
    assert "does not meet the minimum" in str(fourth["reason"])
    version = registry.model_version(trained.settings, trained.usecase, str(fourth["version"]))
    aliases = registry.client(trained.settings).get_model_version(version.name, version.version)
    assert aliases.aliases == [registry.CHALLENGER]


def test_every_trial_is_a_nested_run_and_the_best_is_retrained(trained: Trained) -> None:
    parent = trained.mlflow_run(3)
    client = registry.client(trained.settings)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(children) == 2
    assert all("validation_auc" in c.data.metrics for c in children)
    best = max(children, key=lambda c: c.data.metrics["validation_auc"])
    assert parent.data.tags["tuning_best_trial"] == best.data.tags["trial"]
    for name in trained.usecase.model.tuning.search_space:
        assert parent.data.params[name] == best.data.params[name]


def test_run_logs_metrics_plots_lineage_and_the_clean_table_version(trained: Trained) -> None:
    run = trained.mlflow_run(0)
    for name in ("auc", "pr_auc", "log_loss", "accuracy", "f1"):
        assert 0.0 <= run.data.metrics[f"test_{name}"] <= (1.0 if name != "log_loss" else 5.0)
    assert run.data.tags["usecase"] == "churn"
    assert run.data.tags["run_date"] == RUN_DATE.isoformat()
    assert len(run.data.tags["git_commit"]) in (40, len("unknown"))
    client = MlflowClient(trained.settings.tracking_uri)
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {
        "plots/feature_importance.png",
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/calibration.png",
    }
    (logged,) = run.inputs.dataset_inputs
    source = json.loads(logged.dataset.source)
    clean_version = trained.runs[0]["clean_version"]
    assert logged.dataset.source_type == "delta_table"
    assert int(source["delta_table_version"]) == clean_version
    assert source["path"].endswith(trained.usecase.clean_table)


def test_rollback_and_promote_by_hand(
    trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRESCORE_STATE_DIR", str(trained.settings.state_dir))
    monkeypatch.setenv("PRESCORE_ENV", "test")
    first, third, fourth = (str(trained.runs[i]["version"]) for i in (0, 2, 3))
    assert champion(trained) == third
    assert cli.main(["rollback-model", "--usecase", "churn"]) == 0
    assert champion(trained) == first
    assert registry.champion_history(trained.settings, trained.usecase) == [first]
    assert cli.main(["rollback-model", "--usecase", "churn"]) == 1
    assert "nothing to roll back to" in capsys.readouterr().err
    assert champion(trained) == first
    assert cli.main(["promote", "--usecase", "churn", "--version", fourth]) == 0
    assert champion(trained) == fourth
    assert cli.main(["promote", "--usecase", "churn", "--version", "99"]) == 1
    assert "has no version 99" in capsys.readouterr().err
    assert cli.main(["rollback-model", "--usecase", "churn"]) == 0
    assert champion(trained) == first


def test_regression_is_evaluated_with_rmse_mae_mape_and_residuals(trained: Trained) -> None:
    fifth = trained.runs[4]
    assert fifth["model"] == "regression-churn"
    assert fifth["promoted"] is True  # its first version, no minimum
    run = registry.client(trained.settings).get_run(
        registry.client(trained.settings)
        .get_model_version("regression-churn", str(fifth["version"]))
        .run_id
    )
    assert {"test_rmse", "test_mae", "test_mape"} <= set(run.data.metrics)
    assert "test_auc" not in run.data.metrics
    assert run.data.metrics["test_mae"] <= run.data.metrics["test_rmse"]
    assert run.data.tags["promotion_metric"] == "rmse"
    client = MlflowClient(trained.settings.tracking_uri)
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/feature_importance.png", "plots/residuals.png"}


# ---------------------------------------------------------------- bad input


def _clean(spark: SparkSession, t: Trained) -> DataFrame:
    return tables.read_run(spark, t.settings, t.usecase.clean_table, RUN_DATE)


def _test_rows_get(value: int):  # the label of every test row replaced by `value`
    return lambda df: df.withColumn(
        "churned", F.when(F.col(SPLIT) == "test", F.lit(value)).otherwise(F.col("churned"))
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.withColumn("churned", F.lit(0)), "label 'churned' is constant"),
        (
            lambda df: df.withColumn("churned", F.lit(None).cast("int")),
            "label 'churned' is missing (null on every row)",
        ),
        (
            lambda df: df.withColumn("support_calls", F.lit(None).cast("int")),
            "feature(s) ['support_calls'] are null on every row",
        ),
        (lambda df: df.limit(30), "too few labelled rows to train in split(s)"),
        (_test_rows_get(0), "no examples of class 1 in test"),
        (_test_rows_get(2), "value(s) other than 0 and 1"),
    ],
    ids=["constant-label", "missing-label", "null-feature", "few-rows", "class-absent", "not-0-1"],
)
def test_bad_training_data_is_refused_naming_the_problem(
    spark: SparkSession, trained: Trained, change, message: str
) -> None:
    with pytest.raises(TrainingDataError) as caught:
        check_training_data(change(_clean(spark, trained)), usecase=trained.usecase)
    assert message in str(caught.value)
    assert "clean_customers" in str(caught.value)


def test_good_training_data_passes_the_checks(spark: SparkSession, trained: Trained) -> None:
    rows = check_training_data(_clean(spark, trained), usecase=trained.usecase)
    assert set(rows) == {"train", "validation", "test"} and min(rows.values()) > 100


def test_failed_training_leaves_the_champion_and_the_registry_untouched(
    spark: SparkSession, trained: Trained
) -> None:
    constant = _clean(spark, trained).withColumn("churned", F.lit(1))
    constant = constant.withColumn(tables.RUN_DATE, F.lit(BAD_DATE))
    tables.replace_run(constant, trained.settings, trained.usecase.clean_table, BAD_DATE)
    before = champion(trained)
    name = registry.model_name(trained.settings, trained.usecase)
    versions = len(registry.client(trained.settings).search_model_versions(f"name = '{name}'"))
    with pytest.raises(TrainingDataError, match="label 'churned' is constant"):
        train.run(RunContext(trained.settings, trained.usecase, BAD_DATE, spark))
    assert champion(trained) == before
    after = registry.client(trained.settings).search_model_versions(f"name = '{name}'")
    assert len(after) == versions


def test_promotion_metric_of_another_task_stops_before_fitting(
    spark: SparkSession, trained: Trained
) -> None:
    wrong = with_model(trained.usecase, promotion=PromotionSettings(metric="rmse"))
    with pytest.raises(
        ValueError, match=r"model\.promotion\.metric 'rmse' is not a metric of task 'binary'"
    ):
        train.run(RunContext(trained.settings, wrong, RUN_DATE, spark))


def test_a_champion_trained_on_other_features_gives_way(
    spark: SparkSession, trained: Trained
) -> None:
    """The use case drops a feature: the champion cannot score it, so it is not compared by
    position; the new version, meeting the minimum, replaces it, saying why. (Last: it moves
    @champion.)"""
    fewer = trained.usecase.model_copy(
        update={
            "numeric_features": [f for f in trained.usecase.numeric_features if f != "num_products"]
        }
    )
    before = champion(trained)
    result = train.run(RunContext(trained.settings, fewer, RUN_DATE, spark))
    assert result["promoted"] is True
    assert f"champion v{before} was trained on other features" in str(result["reason"])
    assert "['num_products'] no longer used" in str(result["reason"])
    assert champion(trained) == result["version"]
