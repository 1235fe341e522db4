#!/usr/bin/env bash
# Make sure Spark can load Delta: start one session so Ivy resolves the jars from Maven Central
# (cached under ~/.ivy2*). If Ivy cannot reach it but Maven can, fetch the jars with mvn into
# ~/.m2, which Ivy reads as a local repository, and try again.
set -euo pipefail
python=${1:-.venv/bin/python}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$python" -m prescore.spark >"$log" 2>&1; then
  tail -1 "$log"; exit 0
fi
coordinate=$("$python" -c 'from prescore.spark import delta_package; print(delta_package())')
if ! command -v mvn >/dev/null 2>&1; then
  cat "$log" >&2
  echo "prescore setup: could not fetch $coordinate from Maven Central, and mvn is not installed." >&2
  exit 1
fi
echo "prescore setup: Ivy could not resolve $coordinate; fetching it with mvn into ~/.m2"
mvn -q dependency:get -Dartifact="$coordinate" -Dtransitive=true
"$python" -m prescore.spark 2>&1 | tail -1
