"""The only code that touches engines and files: spark (the session, temporary settings), tables
(every Delta read and write), registry (MLflow tracking, experiments, aliases), files (atomic
writes), alerts (the webhook), airflow_tasks (the stage operator and failure alert), and the
start-up helpers bundle, jars, cds and jvm_setup.
"""
