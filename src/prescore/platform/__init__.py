"""The only code that touches engines and files: Spark, Delta tables, MLflow, alerts, the bundle."""
