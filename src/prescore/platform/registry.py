"""MLflow edges: tracking setup, the experiments, one registered model per use case, aliases.

Named `registry`, not `mlflow`: a module of that name would shadow the library in its importers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescore import catalog, storage

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from prescore.config import Settings, UseCase

# mlflow is imported inside the functions that use it: importing it takes
# seconds, which the CLI's other commands, the lookups and the DAG file never pay.
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, resolved once and stamped on every prediction row."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class ModelNotFoundError(LookupError):
    """No registered version carries the alias a stage asked for."""


def model_name(settings: Settings, usecase: UseCase) -> str:
    return catalog.model_name(settings.mlflow.registry_prefix, usecase.name)


def client(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking URI (default: SQLite under the state folder)."""
    import mlflow

    if settings.tracking_uri.startswith("sqlite:///"):  # SQLite makes the file, not its folder
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment `name`, created with artifacts under the state folder when new."""
    import mlflow  # here, not at the top: importing mlflow costs seconds that lookups never pay

    client(settings)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    # A tracking server keeps artifacts where it is told; with a database, they go to the state.
    server = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if server else storage.artifact_uri(settings.mlflow_artifacts_dir)
    return str(mlflow.create_experiment(name, artifact_location=location))


def experiment_id(settings: Settings, usecase: UseCase) -> str:
    """The use case's training experiment (named as its registered model)."""
    return ensure_experiment(settings, model_name(settings, usecase))


def data_experiment_id(settings: Settings, usecase: UseCase) -> str:
    """The use case's data experiment (`<registered model>-data`): the validate stage's runs."""
    prefix = settings.mlflow.registry_prefix
    return ensure_experiment(settings, catalog.data_experiment(prefix, usecase.name))


def monitoring_experiment_id(settings: Settings, usecase: UseCase) -> str:
    """The use case's monitoring experiment (`<registered model>-monitoring`)."""
    prefix = settings.mlflow.registry_prefix
    return ensure_experiment(settings, catalog.monitoring_experiment(prefix, usecase.name))


def resolve_alias(settings: Settings, usecase: UseCase, alias: str = CHAMPION) -> ModelRef:
    from mlflow.exceptions import MlflowException

    name = model_name(settings, usecase)
    try:
        version = client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"registered model {name!r} has no version with alias @{alias}: run the train stage first"
        ) from exc
    return ModelRef(name=name, version=str(version.version), run_id=str(version.run_id))


def has_alias(settings: Settings, usecase: UseCase, alias: str) -> bool:
    try:
        resolve_alias(settings, usecase, alias)
    except ModelNotFoundError:
        return False
    return True


# The training run's parameter naming the model's input columns, in order (stages/train.py).
FEATURES_PARAM = "features"


def trained_features(settings: Settings, ref: ModelRef) -> list[str] | None:
    """The columns a version was trained on, in order, from its run; None if the run lacks them."""
    text = client(settings).get_run(ref.run_id).data.params.get(FEATURES_PARAM)
    return None if text is None else [c for c in text.split(",") if c]


def set_alias(settings: Settings, ref: ModelRef, alias: str) -> None:
    client(settings).set_registered_model_alias(ref.name, alias, ref.version)


# ---------------------------------------------------------------- champion history

# The registered model's tag listing every version that was @champion, oldest first, so that
# `rollback_champion` knows which one came before the current champion.
HISTORY_TAG = "champion_history"


def champion_history(settings: Settings, usecase: UseCase) -> list[str]:
    found = client(settings).get_registered_model(model_name(settings, usecase))
    text = found.tags.get(HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def model_version(settings: Settings, usecase: UseCase, version: str) -> ModelRef:
    """A registered version by number; ModelNotFoundError names the model and version if absent."""
    from mlflow.exceptions import MlflowException

    name = model_name(settings, usecase)
    try:
        found = client(settings).get_model_version(name, str(version))
    except MlflowException as exc:
        raise ModelNotFoundError(f"registered model {name!r} has no version {version}") from exc
    return ModelRef(name=name, version=str(found.version), run_id=str(found.run_id))


def promote(settings: Settings, ref: ModelRef, *, reason: str, when: str) -> None:
    """Move @champion to `ref`, append it to the champion history, note why and when on it."""
    mlflow_client = client(settings)
    history = mlflow_client.get_registered_model(ref.name).tags.get(HISTORY_TAG, "")
    mlflow_client.set_registered_model_alias(ref.name, CHAMPION, ref.version)
    mlflow_client.set_registered_model_tag(
        ref.name, HISTORY_TAG, ",".join([*filter(None, history.split(",")), ref.version])
    )
    mlflow_client.set_model_version_tag(ref.name, ref.version, "champion_since", when)
    mlflow_client.set_model_version_tag(ref.name, ref.version, "champion_reason", reason)


def rollback_champion(settings: Settings, usecase: UseCase, *, when: str) -> ModelRef:
    """@champion back to the version that held it before the current one; the history drops it."""
    current = resolve_alias(settings, usecase, CHAMPION)
    history = champion_history(settings, usecase)
    while history and history[-1] == current.version:
        history.pop()
    if not history:
        raise ModelNotFoundError(
            f"registered model {current.name!r}: v{current.version} is the only champion there "
            "has been; nothing to roll back to"
        )
    previous = model_version(settings, usecase, history[-1])
    mlflow_client = client(settings)
    mlflow_client.set_registered_model_alias(previous.name, CHAMPION, previous.version)
    mlflow_client.set_registered_model_tag(previous.name, HISTORY_TAG, ",".join(history))
    mlflow_client.set_model_version_tag(current.name, current.version, "rolled_back_at", when)
    mlflow_client.set_model_version_tag(
        previous.name, previous.version, "champion_reason", f"rollback from v{current.version}"
    )
    return previous


class NotAPackageError(ModelNotFoundError):
    """A registered version is a bare booster, logged before models carried their preprocessing."""


def load_package(ref: ModelRef) -> Any:
    """The registered version's model package (training.package.Package): its booster and the
    preprocessing fitted with it, loaded through MLflow's pyfunc loader."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(ref.uri)
    try:
        package = getattr(model.unwrap_python_model(), "package", None)
    except MlflowException:
        package = None
    if package is None:
        raise NotAPackageError(
            f"{ref.name} v{ref.version} is not a prescore model package (a bare booster, "
            "registered before versions carried their preprocessing): train a new version"
        )
    return package
