#!/usr/bin/env bash
# Creates bench/.venv-feast with Feast for the lookup benchmark's baseline (bench/feast/measure.py).
# Feast's pins clash with prescore's, so it gets a virtual environment of its own.
# Idempotent: does nothing while the stamp records the current requirements and constraints.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-feast"
stamp="$venv/.installed"
python="${PYTHON:-python3.11}"

# The stamp holds a digest of both files, so editing either one reinstalls.
digest="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
    exit 0
fi

test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt" -c "$here/constraints.txt"
echo "$digest" > "$stamp"
echo "Feast installed in bench/.venv-feast: $("$venv/bin/python" -c 'import feast; print(feast.__version__)')"
