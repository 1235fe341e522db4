#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 from the pyspark package in .venv: one master and
# WORKERS one-core workers, the same way tests/cluster starts one. Every daemon is its own process
# group under `timeout -s KILL`, so the cluster stops by itself after HARD_TIMEOUT seconds.
#
#   scripts/standalone_cluster.sh start      # waits until the workers registered
#   spark-submit --master spark://127.0.0.1:7077 --packages ... jobs/score.py ...
#   scripts/standalone_cluster.sh status     # the master's JSON
#   scripts/standalone_cluster.sh stop
#
# Settings from the environment: CLUSTER_DIR (.state/cluster: logs, work folders, pid files),
# MASTER_PORT (7077), WEBUI_PORT (8080; workers take the next ports), WORKERS (2),
# WORKER_CORES (1), WORKER_MEMORY (1g), HARD_TIMEOUT (3600).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
dir=${CLUSTER_DIR:-.state/cluster}
port=${MASTER_PORT:-7077}
webui=${WEBUI_PORT:-8080}
workers=${WORKERS:-2}

master_json() {
  "$python" -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$webui/json/"
}

alive_workers() {
  master_json 2>/dev/null | "$python" -c 'import json, sys; print(json.load(sys.stdin)["aliveworkers"])' \
    2>/dev/null || echo 0
}

daemon() {  # daemon NAME CLASS ARGS...: start one JVM as its own process group, remember its id
  local name=$1; shift
  setsid timeout -s KILL "${HARD_TIMEOUT:-3600}" "$SPARK_HOME/bin/spark-class" "$@" \
    >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

start() {
  if [ -e "$dir/master.pid" ] && kill -0 "$(cat "$dir/master.pid")" 2>/dev/null; then
    echo "a cluster from $dir is running; run: $0 stop" >&2; exit 1
  fi
  stop  # pid files left by a cluster that timed out
  mkdir -p "$dir/logs" "$dir/conf"
  SPARK_HOME=$("$python" -c 'import pathlib, pyspark; print(pathlib.Path(pyspark.__file__).parent)')
  export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_CONF_DIR=$dir/conf SPARK_DAEMON_MEMORY=512m
  export SPARK_MASTER_OPTS=-Dspark.master.rest.enabled=false  # no REST submission port
  daemon master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$port" --webui-port "$webui"
  for i in $(seq 1 "$workers"); do
    mkdir -p "$dir/worker-$i"
    SPARK_WORKER_DIR=$dir/worker-$i daemon "worker-$i" org.apache.spark.deploy.worker.Worker \
      "spark://127.0.0.1:$port" --host 127.0.0.1 --cores "${WORKER_CORES:-1}" \
      --memory "${WORKER_MEMORY:-1g}" --webui-port $((webui + i)) --work-dir "$dir/worker-$i"
  done
  for _ in $(seq 1 120); do
    if [ "$(alive_workers)" -ge "$workers" ]; then
      echo "master spark://127.0.0.1:$port (web UI http://127.0.0.1:$webui), $workers workers;" \
        "stops by itself after ${HARD_TIMEOUT:-3600} s"
      return
    fi
    kill -0 "$(cat "$dir/master.pid")" 2>/dev/null || break  # the master died: see its log
    sleep 1
  done
  echo "the workers did not register; logs in $dir/logs" >&2
  stop; exit 1
}

stop() {
  for pidfile in "$dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true  # the whole group: JVM and executors
    rm -f "$pidfile"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) master_json ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
