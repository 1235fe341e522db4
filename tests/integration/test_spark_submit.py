"""get_spark under spark-submit (the launcher's settings win, conf/ fills in the rest) and on its
own (a local master's jars on the class path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from prescore.config import HOME_VARIABLE, PROJECT_ROOT, Settings
from prescore.platform.jars import local_jars
from prescore.platform.spark import delta_package, jars_packages

pytestmark = pytest.mark.integration

SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
PROBE = """
import json
from prescore.config import load_settings
from prescore.platform.spark import get_spark
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


DELTA_PROBE = """
import json, sys
import prescore
from pyspark import SparkConf
from prescore.config import load_settings
from prescore.platform.spark import get_spark
spark = get_spark(load_settings())
spark.range(3).write.format("delta").mode("overwrite").save(sys.argv[1])
rows = spark.read.format("delta").load(sys.argv[1]).count()
conf = SparkConf()
print("PROBE " + json.dumps({
    "rows": rows,
    "jars": conf.get("spark.jars", ""),
    "packages": conf.get("spark.jars.packages", ""),
    "prescore": prescore.__file__,
}))
spark.stop()
"""


def test_a_job_runs_on_the_local_jars_and_the_cached_bundle(
    settings: Settings, tmp_path: Path
) -> None:
    """What a DAG task submits when setup resolved its packages: --jars of local files, the
    cached bundle as --py-files; Delta writes and reads, prescore comes from the bundle."""
    from prescore.platform.bundle import cached_bundle
    from prescore.platform.jars import ensure_local_jars, jars_dir

    coordinates = delta_package()
    jars = local_jars(coordinates) or ensure_local_jars(coordinates)  # setup's work, if not done
    assert all(jar.is_relative_to(jars_dir()) for jar in jars)
    bundle = cached_bundle(tmp_path / "bundles")
    probe = tmp_path / "probe.py"
    probe.write_text(DELTA_PROBE)
    command = [
        *(str(SPARK_SUBMIT), "--master", "local[1]", "--name", "local-jars"),
        *("--jars", ",".join(map(str, jars)), "--py-files", str(bundle)),
        *("--conf", "spark.ui.enabled=false"),
        *(str(probe), str(tmp_path / "table")),
    ]
    env = {**os.environ, "PRESCORE_ENV": "test", "PYSPARK_PYTHON": sys.executable}
    env[HOME_VARIABLE] = str(PROJECT_ROOT)  # as a task sets it: prescore is imported from a zip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert ":: resolving dependencies" not in done.stderr  # no Ivy at run time
    line = next(line for line in done.stdout.splitlines() if line.startswith("PROBE "))
    found = json.loads(line.removeprefix("PROBE "))
    assert found["rows"] == 3
    assert found["packages"] == ""
    assert found["jars"].split(",") == [jar.as_uri() for jar in jars]
    assert found["prescore"] == f"{bundle}/prescore/__init__.py"


def test_a_local_session_loads_the_stored_jars_from_its_class_path(
    spark: SparkSession, settings: Settings
) -> None:
    """The session-wide local[2] session (get_spark, as `prescore run` starts one): the jars
    setup stored are on its JVM's class path, none added to the context for the executor to copy
    (the AWS SDK bundle among them: the test settings reach S3). Delta and s3a load from there:
    the rest of the suite writes Delta tables on the test store through this session."""
    stored = local_jars(jars_packages(settings))
    assert stored, "setup resolved no local jars for the test settings: run make setup"
    assert any(jar.name.startswith("software.amazon.awssdk_bundle") for jar in stored)
    jvm = spark.sparkContext._jvm
    class_path = str(jvm.java.lang.System.getProperty("java.class.path")).split(os.pathsep)
    assert set(map(str, stored)) <= set(class_path)
    assert spark.sparkContext._jsc.sc().listJars().isEmpty()
    assert spark.range(3).count() == 3
