"""get_spark under spark-submit: the launcher's settings win, conf/ fills in the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prescore.config import Settings
from prescore.spark import delta_package

pytestmark = pytest.mark.integration

SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
PROBE = """
import json
from prescore.config import load_settings
from prescore.spark import get_spark
spark = get_spark(load_settings())
keys = ["spark.master", "spark.app.name", "spark.sql.shuffle.partitions",
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled", "spark.sql.extensions"]
print("PROBE " + json.dumps({key: spark.conf.get(key) for key in keys}))
spark.stop()
"""


def test_launcher_conf_wins_and_conf_fills_in_the_rest(settings: Settings, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    command = [
        *(str(SPARK_SUBMIT), "--master", "local[1]", "--name", "launcher-named"),
        *("--packages", delta_package(), "--conf", "spark.sql.shuffle.partitions=5"),
        str(probe),
    ]
    env = {**os.environ, "PRESCORE_ENV": "test", "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE "))
    found = json.loads(line.removeprefix("PROBE "))
    assert settings.spark.shuffle_partitions != 5  # so that 5 can only come from the launcher
    assert found == {
        "spark.master": "local[1]",
        "spark.app.name": "launcher-named",
        "spark.sql.shuffle.partitions": "5",
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    }
