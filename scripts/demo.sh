#!/usr/bin/env bash
# `make demo`: write a day of churn data, run it through the two churn DAGs in Airflow (one
# spark-submit per task), then look a few customers up in the published snapshot:
#   2/5 the score DAG's data tasks (ingest, validate, clean): training needs the clean data of
#       its date, and scoring needs a model, so the later tasks are marked successful, not run;
#   3/5 prescore_churn_train: the first model becomes @champion;
#   4/5 the score DAG again, its data tasks now marked successful (2/5 ran them for this date):
#       score, publish, monitor and retention run; publish makes the snapshot current.
# Each step is one `airflow dags test`. Rerunnable: every stage replaces its output for the run
# date, and `dags test` replaces the run.
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
# Print the final state of each task of the run `dags test` just made of DAG $1, the tasks that
# `--only R` / `--skip R` (as run_dag's) left out shown as marked; non-zero unless all succeeded.
# The states come from the demo's own SQLite metadata database, in the order Airflow created the
# task instances (the DAG's): `airflow tasks states-for-dag-run` says the same in 2-3 s more.
task_states() {
  local dag_id=$1 mode=${2:-} regex=${3:-} run_id
  run_id=$(grep -o "DagRun Finished: dag_id=$dag_id, logical_date=[^,]*, run_id=[^,]*" "$log" |
    tail -n 1 | sed 's/.*run_id=//')
  [[ -n "$run_id" ]] || return 1
  "$bin/python" -c 'import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:
    query = "select task_id, state from task_instance where dag_id = ? and run_id = ? order by id"
    for task_id, state in db.execute(query, sys.argv[2:]):
        print(task_id, state)' "$AIRFLOW_HOME/airflow.db" "$dag_id" "$run_id" 2>>"$log" |
    awk -v mode="$mode" -v regex="^($regex)$" '{
        marked = (mode == "--skip" && $1 ~ regex) || (mode == "--only" && $1 !~ regex)
        printf "  %-10s %s\n", $1, (marked ? "marked " $2 ", not run" : $2)
        n++; if ($2 != "success") bad = 1 }
      END { exit (bad || n == 0) }'
}
# One DAG run for the run date; fails the demo unless every task succeeded. `dags test` exits
# non-zero when the run ends failed, which any failed task causes (each task needs the one
# before); the task states are checked as well. `--only R` runs the tasks whose id matches the
# regex R, `--skip R` the others; the rest are marked successful without running.
run_dag() {
  local dag_id=$1 marked='' status=0
  case ${2:-} in
    --only) marked="(?!($3)\$).*" ;;
    --skip) marked=$3 ;;
  esac
  local args=(dags test "$dag_id" "$run_date")
  [[ -z "$marked" ]] || args+=(--mark-success-pattern "$marked")
  "$bin/airflow" "${args[@]}" >>"$log" 2>&1 || status=$?
  task_states "$dag_id" "${@:2}" || status=1
  [[ $status -eq 0 ]] || fail "airflow ${args[*]}"
}

step "1/5 generate $rows $usecase rows for $run_date"
"$bin/prescore" datagen --usecase "$usecase" --run-date "$run_date" --rows "$rows" \
  --history-days "$history_days"

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
"$bin/airflow" db migrate >>"$log" 2>&1 || fail "airflow db migrate"

data_tasks='ingest|validate|clean'  # a regex Airflow matches against whole task ids
step "2/5 clean data for training: $score_dag ingest, validate, clean (airflow dags test; log: $log)"
run_dag "$score_dag" --only "$data_tasks"

step "3/5 train: $train_dag for $run_date (airflow dags test)"
run_dag "$train_dag"

step "4/5 score and publish: $score_dag for $run_date (airflow dags test; data tasks from step 2)"
run_dag "$score_dag" --skip "$data_tasks"

step "5/5 look up published scores (prescore lookup, the Python client)"
"$bin/prescore" lookup --usecase "$usecase" --sample 5

elapsed=$((SECONDS - started))
printf '\ndemo: done in %dm%02ds (state in %s)\n' $((elapsed / 60)) $((elapsed % 60)) "$state"
