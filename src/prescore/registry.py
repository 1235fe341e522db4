"""MLflow edges: tracking setup, one experiment and one registered model per use case, aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from prescore.config import Settings, UseCase

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
    return f"{settings.mlflow.registry_prefix}-{usecase.name}"


def client(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking URI (default: SQLite under the state folder)."""
    import mlflow

    if settings.tracking_uri.startswith("sqlite:///"):
        (settings.state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def experiment_id(settings: Settings, usecase: UseCase) -> str:
    """The use case's experiment, created with artifacts under the state folder when new."""
    import mlflow

    name = model_name(settings, usecase)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = settings.mlflow_artifacts_dir.as_uri() if not settings.mlflow.tracking_uri else None
    return str(mlflow.create_experiment(name, artifact_location=location))


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


def set_alias(settings: Settings, ref: ModelRef, alias: str) -> None:
    client(settings).set_registered_model_alias(ref.name, alias, ref.version)
