#!/usr/bin/env bash
# `make demo`: write a day of churn data, run the whole flow through Airflow (`airflow dags test`,
# one spark-submit per stage), then look a few customers up in the published DuckDB snapshot.
# Rerunnable: every stage replaces its output for the run date, and `dags test` replaces the run.
#
#   RUN_DATE            logical date of the run (default: today, UTC, so the scores are fresh;
#                       the same date gives the same tables)
#   DEMO_ROWS           customers to generate (default 100000)
#   PRESCORE_STATE_DIR  tables, models, Airflow's database and logs (default .state)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$root/.venv/bin
run_date=${RUN_DATE:-$(date -u +%F)}
rows=${DEMO_ROWS:-100000}
usecase=churn
dag_id=prescore_$usecase
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
log=$state/logs/airflow-$dag_id-$run_date.log

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
# Print each task's final state for the run `dags test` just made; non-zero unless all succeeded.
task_states() {
  local run_id
  run_id=$(grep -o "DagRun Finished: dag_id=$dag_id, logical_date=[^,]*, run_id=[^,]*" "$log" |
    tail -n 1 | sed 's/.*run_id=//')
  [[ -n "$run_id" ]] || return 1
  "$bin/airflow" tasks states-for-dag-run "$dag_id" "$run_id" -o plain 2>>"$log" |
    awk -v dag="$dag_id" '$1 == dag { printf "  %-10s %s\n", $3, $4; n++; if ($4 != "success") bad = 1 }
      END { exit (bad || n == 0) }'
}

step "1/3 generate $rows $usecase rows for $run_date"
"$bin/prescore" datagen --usecase "$usecase" --run-date "$run_date" --rows "$rows"

step "2/3 run $dag_id for $run_date through Airflow (airflow dags test; log: $log)"
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
# `dags test` exits non-zero when the run ends failed, which any failed task causes here (each
# task needs the one before); the task states are checked as well.
status=0
"$bin/airflow" dags test "$dag_id" "$run_date" >>"$log" 2>&1 || status=$?
task_states || status=1
[[ $status -eq 0 ]] || fail "airflow dags test $dag_id $run_date"

step "3/3 look up published scores (DuckDB)"
"$bin/prescore" lookup --usecase "$usecase" --sample 5

elapsed=$((SECONDS - started))
printf '\ndemo: done in %dm%02ds (state in %s)\n' $((elapsed / 60)) $((elapsed % 60)) "$state"
