"""The one place a SparkSession is built: Delta on, settings from conf/base.yaml."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from prescore.config import Settings


def delta_package() -> str:
    """Maven coordinate of the Delta jar for the installed pyspark and delta-spark (no imports)."""
    spark_minor = ".".join(importlib.metadata.version("pyspark").split(".")[:2])
    delta_version = importlib.metadata.version("delta-spark")
    return f"io.delta:delta-spark_{spark_minor}_2.13:{delta_version}"


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting prescore needs, for a builder or a spark-submit --conf list."""
    return {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.jars.packages": delta_package(),
        # Workers run the same interpreter (and so the same packages) as the driver.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # Delta's replaceWhere must only ever touch the run_date it names.
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
        **settings.spark.conf,
    }


def get_spark(settings: Settings) -> SparkSession:
    """The active session, or a new one with Delta on.

    Under spark-submit the launcher already chose the master and resolved --packages (the DAG
    passes them from its connection), so those are left alone; run from plain Python, conf decides.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # PySpark starts workers with $PYSPARK_PYTHON (default: python3 on PATH, maybe without our packages).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(settings.spark.app_name)
    if not under_spark_submit:
        builder = builder.master(settings.spark.master)
    for key, value in spark_conf(settings).items():
        if not (under_spark_submit and key == "spark.jars.packages"):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


if __name__ == "__main__":
    # `python -m prescore.spark`: start a session once so that the Delta jars are resolved and
    # cached (setup calls this; see scripts/fetch_delta_jars.sh for the offline fallback).
    from prescore.config import load_settings

    session = get_spark(load_settings())
    session.range(1).count()
    print(f"Spark {session.version} with {delta_package()}: ready")
    session.stop()
