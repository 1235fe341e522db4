"""prescore: batch precompute serving on Spark.

The package is in layers, each importing only those below it (pyproject.toml [tool.importlinter]):
cli and flow (entry points) -> stages/ (run(ctx): read -> pure core -> write -> log) -> data/,
training/, scoring/, serving/, monitoring/, demo/ (functions on DataFrames and settings) ->
platform/ (Spark, Delta, MLflow, files, Airflow) -> config, catalog (every name, once).
"""

__version__ = "0.1.0"
