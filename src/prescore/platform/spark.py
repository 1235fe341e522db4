"""The one place a SparkSession is built: Delta on, settings from conf/base.yaml."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prescore import storage
from prescore.platform.jars import cds_java_options, local_jars, local_master, on_class_path
from prescore.platform.logstore import (
    LOGSTORE_CLASS,
    LOGSTORE_CONF,
    holds_logstore,
    needs_logstore,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from pyspark.sql import SparkSession

    from prescore.config import Settings, UseCase


def delta_package() -> str:
    """Maven coordinate of the Delta jar for the installed pyspark and delta-spark (no imports)."""
    spark_minor = ".".join(importlib.metadata.version("pyspark").split(".")[:2])
    delta_version = importlib.metadata.version("delta-spark")
    return f"io.delta:delta-spark_{spark_minor}_2.13:{delta_version}"


def hadoop_aws_package() -> str:
    """Maven coordinate of Hadoop's S3 connector (s3a://) for the Hadoop jars pyspark ships: the
    two must be the same version. Read from pyspark's installed file list, not its import path:
    under spark-submit pyspark imports from a zip with no jars, and DAG files call this as they
    parse."""
    names = [file.name for file in importlib.metadata.files("pyspark") or []]
    versions = sorted(
        name.removeprefix("hadoop-client-api-").removesuffix(".jar")
        for name in names
        if name.startswith("hadoop-client-api-") and name.endswith(".jar")
    )
    if not versions:
        raise RuntimeError("pyspark's files hold no hadoop-client-api jar: cannot pick hadoop-aws")
    return f"org.apache.hadoop:hadoop-aws:{versions[-1]}"


def jars_packages(settings: Settings, packages: Sequence[str] = ()) -> str:
    """Delta, hadoop-aws when the state (or spark.object_store) asks for it, the packages conf
    names (spark.jars.packages in spark.conf: a test's JDBC driver) and `packages` (a use case's
    JDBC driver), as one spark.jars.packages list."""
    named = settings.spark.conf.get("spark.jars.packages", "")
    s3a = settings.state_on_object_store or settings.spark.object_store
    wanted = [
        delta_package(),
        *([hadoop_aws_package()] if s3a else []),
        *named.split(","),
        *packages,
    ]
    return ",".join(dict.fromkeys(p.strip() for p in wanted if p.strip()))


def source_packages(usecase: UseCase) -> list[str]:
    """The Maven packages the use case's source needs in the session (its JDBC driver)."""
    return [usecase.source.driver_package] if usecase.source.driver_package else []


# The settings that bring jars into a session; spark_conf sets them from jar_conf.
JAR_KEYS = ("spark.jars", "spark.jars.packages")


def jar_conf(settings: Settings, packages: Sequence[str] = ()) -> dict[str, str]:
    """How the session gets Delta and the drivers: `spark.jars`, the local files setup resolved
    for exactly these coordinates (see prescore.platform.jars), else `spark.jars.packages` (Ivy resolves
    them when the session starts). Jars conf names in spark.jars come after the resolved ones.
    With hadoop-aws comes Delta's commit guard for s3a:// (prescore.platform.logstore)."""
    coordinates = jars_packages(settings, packages)
    local = local_jars(coordinates)
    conf = {} if local else {"spark.jars.packages": coordinates}
    jars = [*(str(jar) for jar in local or []), settings.spark.conf.get("spark.jars", "")]
    if any(jars):
        conf["spark.jars"] = ",".join(filter(None, jars))
    return conf | commit_guard_conf(settings, coordinates, local or [])


def commit_guard_conf(
    settings: Settings, coordinates: str, local: Sequence[Path]
) -> dict[str, str]:
    """Delta's LogStore for s3a://: prescore's conditional-put one, when setup built it beside
    these jars, unless conf names another (S3DynamoDBLogStore). State on the store without any
    guard is refused: concurrent writers could lose commits."""
    if LOGSTORE_CONF in settings.spark.conf or not needs_logstore(coordinates):
        return {}
    if holds_logstore(local):
        return {LOGSTORE_CONF: LOGSTORE_CLASS}
    if settings.state_on_object_store:
        raise RuntimeError(
            f"the state is on an object store ({settings.state_dir}) but setup did not build "
            "Delta's S3 commit guard for these jars: run `make setup` (python -m "
            f"prescore.platform.jvm_setup, with the same settings), or set {LOGSTORE_CONF}"
        )
    return {}


def spark_conf(settings: Settings, packages: Sequence[str] = ()) -> dict[str, str]:
    """Every Spark setting prescore needs, for a builder or a spark-submit --conf list.

    The jars are loaded once, when the session starts: `packages` (a use case's JDBC driver)
    must be named by whoever builds the session for a stage.
    """
    conf = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        # Workers run the same interpreter (and so the same packages) as the driver.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # Delta's replaceWhere must only ever touch the run_date it names.
        "spark.databricks.delta.replaceWhere.constraintCheck.enabled": "true",
        # Files and folders Hadoop's file systems create (Delta tables) get no world access,
        # whatever the JVM's own umask: the local one applies it with an explicit chmod.
        "spark.hadoop.fs.permissions.umask-mode": "027",
        **settings.spark.conf,
    }
    cds = cds_java_options()  # the driver's class-data-sharing archive, if setup made one
    if cds:
        named = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"{named} {cds}".strip()
    return {k: v for k, v in conf.items() if k not in JAR_KEYS} | jar_conf(settings, packages)


def object_store_conf() -> dict[str, str]:
    """s3a's settings from the environment, set on a session as it starts and never written in
    spark_conf (a DAG puts that on a spark-submit command line, which Airflow logs). Credentials
    stay with the AWS SDK, which reads them from the environment itself."""
    endpoint = storage.endpoint()
    if endpoint is None:
        return {}
    return {  # an S3-compatible server (MinIO): buckets as paths, not host names
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }


def get_spark(settings: Settings, packages: Sequence[str] = ()) -> SparkSession:
    """The active session, or a new one with Delta on and `packages` (JDBC drivers) loaded.

    Under spark-submit the launcher already chose the master and loaded the jars, and what it
    was given with --conf wins over conf/ (a cluster's python path, say); run from plain Python,
    conf decides everything.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # PySpark starts workers with $PYSPARK_PYTHON (default: python3 on PATH, maybe without our packages).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    wanted = {
        "spark.master": settings.spark.master,
        "spark.app.name": settings.spark.app_name,
        **spark_conf(settings, packages),
        **object_store_conf(),
    }
    launcher = launcher_conf()
    environment: dict[str, str] = {}
    if launcher is not None:  # the JVM is up, its packages resolved: fill in only what is unset
        wanted = {k: v for k, v in wanted.items() if k not in launcher and k not in JAR_KEYS}
    elif local_master(settings.spark.master):  # one JVM: the jars go on its class path
        jars, environment = on_class_path(wanted.pop("spark.jars", None))
        wanted |= {"spark.jars": jars} if jars else {}
    builder = SparkSession.builder
    for key, value in wanted.items():
        builder = builder.config(key, value)
    with environment_set(environment):  # read by the launcher that starts the JVM
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def launcher_conf() -> dict[str, str] | None:
    """The settings spark-submit was given (--conf, --name, --master...), or None outside it.

    spark-submit hands them to the driver's JVM as system properties; a SparkConf sees them once
    the gateway to that JVM is up, which `_ensure_initialized` does without starting a context.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


@contextmanager
def environment_set(variables: dict[str, str]) -> Iterator[None]:
    """The process environment has `variables` inside the block, and what it had after."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def temporary_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """Session setting `key` is `value` inside the block; what it was (or unset) comes back after."""
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
