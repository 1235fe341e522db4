-- Runs once, when the Postgres volume is first created (docker-entrypoint-initdb.d).
-- One server, one database per tool; both are owned by POSTGRES_USER, the only role compose
-- creates. Airflow and MLflow create their own tables on first start (airflow db migrate, MLflow's
-- automatic migration).
create database airflow;
create database mlflow;
