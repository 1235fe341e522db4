#!/usr/bin/env bash
# `make demo`: write a day of churn data, run it through the two churn DAGs in Airflow (one
# spark-submit per task), then look a few customers up in the published snapshot:
#   2/5 the score DAG's data tasks (ingest, validate, clean): training needs the clean data of
#       its date, and scoring needs a model, so the later tasks are marked successful, not run;
#   3/5 prescore_churn_train: the first model becomes @champion;
#   4/5 the score DAG again, its data tasks now marked successful (2/5 ran them for this date):
#       score, publish, monitor and retention run; publish makes the snapshot current.
# Each step is one DAG run through Airflow's DAG.test, what `airflow dags test` runs (the three in
# one process: scripts/demo_dags.py). Rerunnable: every stage replaces its output for the run
# date, and a test run replaces the run.
#
#   RUN_DATE            logical date of the run (default: today, UTC, so the scores are fresh;
#                       the same date gives the same tables)
#   USECASE             the use case (default churn; forecast: USECASE=forecast DEMO_ROWS=200
#                       DEMO_HISTORY_DAYS=120 make demo, 200 store-item series)
#   DEMO_ROWS           rows to generate, or series for a time series (default 100000)
#   DEMO_HISTORY_DAYS   time series: also land the days before the run date (default 0)
#   PRESCORE_STATE_DIR  tables, models, Airflow's database and logs (default .state)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/.venv/bin
run_date=${RUN_DATE:-$(date -u +%F)}
rows=${DEMO_ROWS:-100000}
usecase=${USECASE:-churn}
history_days=${DEMO_HISTORY_DAYS:-0}
score_dag=prescore_${usecase}_score
train_dag=prescore_${usecase}_train
started=$SECONDS

if [[ -z "${PRESCORE_HMAC_KEY:-}" ]]; then
  echo "demo: PRESCORE_HMAC_KEY is not set (make demo sets a demo-only value)" >&2
  exit 1
fi

# A relative state folder is taken from the project root, as in conf/base.yaml; every process
# below (Airflow, spark-submit, the jobs) gets the same absolute path.
state=${PRESCORE_STATE_DIR:-.state}
mkdir -p "$state"
state=$(cd "$state" && pwd)
export PRESCORE_STATE_DIR=$state
mkdir -p "$state/logs"
log=$state/logs/airflow-prescore_$usecase-$run_date.log

# The Spark launcher that pyspark installs runs `python3` unless told otherwise: use the venv's.
export PATH=$bin:$PATH
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$bin/python}

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "demo: $1 failed. Last errors below; full log: $log" >&2
  grep -E 'prescore [a-z]+: error:|Traceback|Error:|Exception:|new_state=failed|DagRun failed' "$log" |
    cut -c1-240 | tail -n 20 >&2 || true
  exit 1
}

# Airflow for every step below: SQLite metadata database and logs under the state folder.
export AIRFLOW_HOME=$state/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$root/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
if [[ -z "${AIRFLOW_CONN_SPARK_DEFAULT:-}" ]]; then
  master=${PRESCORE_SPARK_MASTER:-local[*]}
  export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"$master\"}"
fi
# A failing stage fails the demo at once instead of waiting out retry delays.
export PRESCORE_TASK_RETRIES=${PRESCORE_TASK_RETRIES:-0}
mkdir -p "$AIRFLOW_HOME"
: >"$log"
# The metadata database is made while the data is generated.
"$bin/airflow" db migrate >>"$log" 2>&1 &
migrating=$!

step "1/5 generate $rows $usecase rows for $run_date"
"$bin/prescore" datagen --usecase "$usecase" --run-date "$run_date" --rows "$rows" \
  --history-days "$history_days"

wait "$migrating" || fail "airflow db migrate"

# Steps 2/5 to 4/5: one DAG run each, through Airflow's DAG.test (what `airflow dags test` runs)
# in one Python process; it prints the steps and task states to fd 3, Airflow's output to the log.
DEMO_LOG=$log "$bin/python" "$root/scripts/demo_dags.py" "$usecase" "$run_date" 3>&1 >>"$log" 2>&1 ||
  fail "the DAG runs"

step "5/5 look up published scores (prescore lookup, the Python client)"
"$bin/prescore" lookup --usecase "$usecase" --sample 5

elapsed=$((SECONDS - started))
printf '\ndemo: done in %dm%02ds (state in %s)\n' $((elapsed / 60)) $((elapsed % 60)) "$state"
