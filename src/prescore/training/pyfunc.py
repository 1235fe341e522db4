"""The registered model: a `Package` as an MLflow pyfunc, loadable and servable anywhere prescore
is installed (`mlflow.pyfunc.load_model`, `mlflow models serve --env-manager local`).

Its input is the feature columns as clean holds them (before any fill, clip or coding), by name,
a derived feature as the source columns it is derived from; its output one score per row. The
signature names every input: a categorical is a string, a numeric column `any`, because MLflow refuses integers for a double column and floats (an integer
column with a missing value) for a long one; the package itself casts and names a value that is
not a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.pyfunc import PythonModel

from prescore.platform import registry
from prescore.training.package import Package, Preprocessing

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow.models import ModelSignature

    from prescore.config import Settings, UseCase

BOOSTER = "booster"  # the artifact names inside a logged model
PREPROCESSING = "preprocessing"


class PackagedModel(PythonModel):
    """Loads the booster and its preprocessing from the model's artifacts; predicts raw rows."""

    package: Package

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        self.package = Package.from_parts(
            Path(artifacts[BOOSTER]).read_bytes(), Path(artifacts[PREPROCESSING]).read_text()
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.package.predict(model_input)


def load_preprocessing(ref: registry.ModelRef) -> Preprocessing:
    """The preprocessing of a registered package alone, for a stage that needs only what was
    fitted (the monitor's category levels): the MLmodel file and one JSON artifact are read, not
    the booster, and XGBoost is not imported."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    flavor = Model.load(ref.uri).flavors.get("python_function", {})
    artifact = (flavor.get("artifacts") or {}).get(PREPROCESSING)
    if artifact is None:
        raise registry.NotAPackageError(
            f"{ref.name} v{ref.version} is not a prescore model package (no {PREPROCESSING} "
            "artifact: a bare booster, registered before versions carried their preprocessing): "
            "train a new version"
        )
    path = download_artifacts(artifact_uri=f"{ref.uri}/{artifact['path']}")
    return Preprocessing.from_json(Path(path).read_text())


def signature(package: Package) -> ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    categorical = set(package.preprocessing.levels)
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("string" if name in categorical else AnyType(), name)
        for name in package.preprocessing.inputs
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def log_package(
    package: Package, *, folder: Path, registered_model_name: str, input_example: pd.DataFrame
) -> Any:
    """Log `package` as the run's model `model` and register it; `folder` holds the artifact
    files while they are logged. Returns MLflow's ModelInfo."""
    booster, preprocessing = package.to_parts()
    (folder / "booster.ubj").write_bytes(booster)
    (folder / "preprocessing.json").write_text(preprocessing)
    import mlflow.pyfunc

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=PackagedModel(),
        artifacts={
            BOOSTER: str(folder / "booster.ubj"),
            PREPROCESSING: str(folder / "preprocessing.json"),
        },
        signature=signature(package),
        input_example=input_example,
        registered_model_name=registered_model_name,
        pip_requirements=requirements(),
    )


def register_package(
    settings: Settings,
    usecase: UseCase,
    package: Package,
    *,
    alias: str,
    input_example: pd.DataFrame,
) -> registry.ModelRef:
    """Log `package` in a run of its own in the use case's experiment, register it and point
    `alias` at it: a model made outside the train stage (a test's, a benchmark's)."""
    import tempfile

    import mlflow

    name = registry.model_name(settings, usecase)
    registry.client(settings)
    experiment = registry.experiment_id(settings, usecase)
    with mlflow.start_run(experiment_id=experiment) as run, tempfile.TemporaryDirectory() as folder:
        info = log_package(
            package, folder=Path(folder), registered_model_name=name, input_example=input_example
        )
    ref = registry.ModelRef(name, str(info.registered_model_version), run.info.run_id)
    registry.set_alias(settings, ref, alias)
    return ref


def requirements() -> list[str]:
    """The libraries the package needs at load, pinned as installed (prescore itself must be
    installed where the model is served: the class above lives in it)."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}" for name in ("mlflow", "xgboost", "pyarrow", "pandas", "duckdb")
    ]
