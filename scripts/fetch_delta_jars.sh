#!/usr/bin/env bash
# Resolve Spark's packages once, at setup: `python -m prescore.platform.jvm_setup` resolves Delta (and each use
# case's JDBC driver) through Spark's own Ivy resolver and keeps the jars in the local jar store
# (prescore.platform.jars), so that tasks and sessions start from local files instead of resolving
# --packages every time. Both the default settings and the test suite's (conf/env/test.yaml adds
# a JDBC driver) are resolved. If Ivy cannot reach Maven Central but Maven can, fetch the jars with
# mvn into ~/.m2, which Ivy reads as a local repository, and try again.
set -euo pipefail
python=${1:-.venv/bin/python}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
resolve() {
  "$python" -m prescore.platform.jvm_setup >"$log" 2>&1 && PRESCORE_ENV=test "$python" -m prescore.platform.jvm_setup >>"$log" 2>&1
}
if resolve; then
  tail -1 "$log"; exit 0
fi
if grep -q "javac" "$log"; then  # the S3 commit guard did not compile: no download will help
  cat "$log" >&2; exit 1
fi
coordinates=$("$python" -c 'from prescore.platform.spark import delta_package; print(delta_package())')
coordinates="$coordinates $(PRESCORE_ENV=test "$python" -c \
  'from prescore.config import load_settings; print(load_settings().spark.conf.get("spark.jars.packages", ""))' | tr ',' ' ')"
if ! command -v mvn >/dev/null 2>&1; then
  cat "$log" >&2
  echo "prescore setup: could not fetch $coordinates from Maven Central, and mvn is not installed." >&2
  exit 1
fi
echo "prescore setup: Ivy could not resolve $coordinates; fetching them with mvn into ~/.m2"
for coordinate in $coordinates; do
  mvn -q dependency:get -Dartifact="$coordinate" -Dtransitive=true
done
resolve || { cat "$log" >&2; exit 1; }
tail -1 "$log"
