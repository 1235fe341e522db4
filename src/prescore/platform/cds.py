"""Class-data sharing for the Spark driver's JVM: its classes mapped from an archive, not loaded.

A spark-submit driver loads and verifies some 15,000 classes (Spark SQL, Catalyst, Delta) before
its first job. Setup runs one stage-like job (a Delta write and read) with
-XX:ArchiveClassesAtExit, which dumps the classes it loaded into <jars dir>/cds/ at exit (Java 17
has no -XX:+AutoCreateSharedArchive: that is JDK 19+); `prescore.platform.spark.spark_conf` then gives
every driver -XX:SharedArchiveFile through spark.driver.extraJavaOptions, for spark-submit tasks
and in-process sessions alike. See bench/README.md (startup) for what it saves. A folder with
files on the driver's class path (a SPARK_CONF_DIR holding spark-defaults.conf, say) rules the
archive out: setup then makes none and says why (prescore.platform.jars.cds_blockers).

Setup submits `warm_up` as the job: `python -m prescore.platform.jvm_setup` calls `dump_archive`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from prescore.config import Settings, load_settings
from prescore.platform.jars import cds_archive, cds_blockers, ensure_local_jars
from prescore.platform.spark import JAR_KEYS, get_spark, jars_packages, spark_conf

JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def dump_archive(settings: Settings) -> Path | None:
    """Make the driver's CDS archive, once: one warm-up job under -XX:ArchiveClassesAtExit.
    None, and no job, while a folder on the driver's class path holds files (cds_blockers)."""
    if cds_blockers():
        return None
    archive = cds_archive()
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    jars = ensure_local_jars(jars_packages(settings), settings.spark.conf)
    conf = {k: v for k, v in spark_conf(settings).items() if k not in JAR_KEYS}
    named = settings.spark.conf.get(JAVA_OPTIONS, "")
    with tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        dumped, job = Path(scratch) / archive.name, Path(scratch) / "warm_up.py"
        # A file of its own: run from inside the package, its modules would shadow the stdlib's.
        job.write_text(
            "import sys\nfrom prescore.platform.cds import warm_up\nwarm_up(sys.argv[1])\n"
        )
        conf[JAVA_OPTIONS] = f"{named} -XX:ArchiveClassesAtExit={dumped}".strip()
        command = [
            str(Path(sys.executable).with_name("spark-submit")),
            *("--master", "local[2]", "--jars", ",".join(map(str, jars))),
            *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
            *(str(job), scratch),
        ]
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"CDS warm-up job failed:\n{done.stderr[-3000:]}")
        os.replace(dumped, archive)  # whole, or not there
    return archive


def warm_up(folder: str) -> None:
    """What a stage does first: start the session, write and read a Delta table."""
    spark = get_spark(load_settings())
    table = str(Path(folder) / "warm-up")
    spark.range(10).write.format("delta").mode("overwrite").save(table)
    spark.read.format("delta").load(table).count()
    spark.stop()
