"""The local jar store: packages resolved once at setup, looked up by exactly their coordinates."""

from __future__ import annotations

from pathlib import Path

import pytest

from prescore.config import load_settings
from prescore.platform.cds import dump_archive
from prescore.platform.jars import (
    CLASS_PATH_VARIABLE,
    JARS_VARIABLE,
    artifact_name,
    cds_archive,
    cds_blockers,
    class_path_folders,
    local_jars,
    local_master,
    on_class_path,
    spark_artifacts,
    store_jars,
)
from prescore.platform.logstore import LOGSTORE_CLASS, LOGSTORE_CONF, logstore_jar_name
from prescore.platform.spark import delta_package, jars_packages, spark_conf
from prescore.storage import state_location

pytestmark = pytest.mark.unit

DRIVER = "org.xerial:sqlite-jdbc:3.54.1.0"


@pytest.fixture
def jars(tmp_path: Path) -> list[Path]:
    files = [tmp_path / "io.delta_delta-spark.jar", tmp_path / "org.xerial_sqlite-jdbc.jar"]
    for path in files:
        path.write_bytes(path.name.encode())
    return files


def test_a_set_is_found_by_exactly_its_coordinates(tmp_path: Path, jars: list[Path]) -> None:
    store = tmp_path / "store"
    stored = store_jars(f"{delta_package()}, {DRIVER}", jars, store)
    assert stored == [store / "files" / jar.name for jar in jars]
    assert [p.read_bytes() for p in stored] == [j.read_bytes() for j in jars]
    assert local_jars(f"{delta_package()},{DRIVER},{DRIVER}", store) == stored  # same set
    assert local_jars(delta_package(), store) is None  # a subset is another set
    assert local_jars(f"{DRIVER},{delta_package()}", store) is None  # order decides the classpath
    stored[1].unlink()
    assert local_jars(f"{delta_package()},{DRIVER}", store) is None  # a jar gone: not resolved


def test_jars_spark_ships_itself_are_left_out_in_any_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [
        "io.delta_delta-spark_4.2_2.13-4.4.0.jar",
        "com.fasterxml.jackson.core_jackson-databind-2.13.5.jar",  # Spark ships 2.x: left out
        "com.github.luben_zstd-jni-1.5.7-3.jar",  # Spark ships zstd-jni-1.5.7-7: left out
        "org.apache.hadoop_hadoop-aws-3.5.0.jar",
    ]
    jars = [tmp_path / name for name in names]
    for jar in jars:
        jar.write_bytes(jar.name.encode())
    store = tmp_path / "store"
    files = [store / "files" / name for name in names]

    assert store_jars(delta_package(), jars, store) == [files[0], files[3]]
    assert "jackson-databind" in spark_artifacts()  # pyspark's own jars, as spark-submit runs
    assert local_jars(delta_package(), store) == [files[0], files[3]]

    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    (home / "jars" / "hadoop-aws-3.4.0.jar").write_bytes(b"")
    monkeypatch.setenv("SPARK_HOME", str(home))  # another Spark: its jars decide
    assert local_jars(delta_package(), store) == files[:3]
    assert artifact_name("jackson-module-scala_2.13-2.21.2.jar") == "jackson-module-scala_2.13"


def test_a_session_gets_the_local_jars_when_resolved_else_the_packages(
    tmp_path: Path, jars: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(env="test")  # adds the sqlite-jdbc driver's package
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "store"))
    conf = spark_conf(settings)
    assert conf["spark.jars.packages"] == jars_packages(settings)
    assert "spark.jars" not in conf and "spark.driver.extraJavaOptions" not in conf

    stored = store_jars(jars_packages(settings), jars)
    conf = spark_conf(settings)
    assert "spark.jars.packages" not in conf
    assert conf["spark.jars"] == ",".join(map(str, stored))


def test_the_s3_commit_guard_comes_with_the_jars_and_a_store_without_one_is_refused(
    tmp_path: Path, jars: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(env="test")  # spark.object_store: hadoop-aws joins the set
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "store"))
    assert LOGSTORE_CONF not in spark_conf(settings)  # nothing resolved, a local state: no guard
    tracking = settings.mlflow.model_copy(update={"tracking_uri": "sqlite:///x.db"})
    on_store = settings.model_copy(
        update={"state_dir": state_location("s3a://lake/state", root=tmp_path), "mlflow": tracking}
    )
    with pytest.raises(RuntimeError, match="did not build Delta's S3 commit guard"):
        spark_conf(on_store)  # concurrent writers could lose commits: refused

    guard = tmp_path / logstore_jar_name()
    guard.write_bytes(b"the LogStore")
    store_jars(jars_packages(settings), [*jars, guard])
    assert spark_conf(on_store)[LOGSTORE_CONF] == LOGSTORE_CLASS
    assert spark_conf(settings)[LOGSTORE_CONF] == LOGSTORE_CLASS  # s3a sources on a local state

    dynamodb = "io.delta.storage.S3DynamoDBLogStore"  # named in conf: it takes the place
    conf = {**settings.spark.conf, LOGSTORE_CONF: dynamodb}
    named = on_store.model_copy(update={"spark": settings.spark.model_copy(update={"conf": conf})})
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "empty"))
    assert spark_conf(named)[LOGSTORE_CONF] == dynamodb


def test_the_driver_uses_the_cds_archive_once_setup_made_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(env="test")
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "store"))
    assert "spark.driver.extraJavaOptions" not in spark_conf(settings)
    archive = cds_archive()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    options = spark_conf(settings)["spark.driver.extraJavaOptions"]
    assert options == f"-XX:SharedArchiveFile={archive}"


def test_the_cds_archive_is_the_one_dumped_on_this_class_path_and_none_through_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(env="test")
    monkeypatch.setenv(JARS_VARIABLE, str(tmp_path / "store"))
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    default = cds_archive()
    default.parent.mkdir(parents=True)
    default.write_bytes(b"archive")
    conf_dir = tmp_path / "spark-conf"
    conf_dir.mkdir()
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf_dir))
    # An empty folder changes the class path too: the JVM would refuse the default's archive.
    assert cds_archive() != default
    assert "spark.driver.extraJavaOptions" not in spark_conf(settings)
    cds_archive().write_bytes(b"archive")
    assert spark_conf(settings)["spark.driver.extraJavaOptions"].endswith(str(cds_archive()))

    (conf_dir / "spark-defaults.conf").write_text("spark.eventLog.enabled true\n")
    assert cds_blockers() == [conf_dir]
    assert "spark.driver.extraJavaOptions" not in spark_conf(settings)
    assert dump_archive(settings) is None  # setup makes none, and starts no job trying


def test_the_class_path_folders_are_those_spark_class_adds_that_exist(tmp_path: Path) -> None:
    home, hadoop, yarn = tmp_path / "spark", tmp_path / "hadoop", tmp_path / "yarn"
    for folder, file in ((home / "conf", "log4j2.properties"), (hadoop, "core-site.xml")):
        folder.mkdir(parents=True)
        (folder / file).write_text("")
    yarn.mkdir()
    environ = {"SPARK_HOME": str(home), "HADOOP_CONF_DIR": str(hadoop), "YARN_CONF_DIR": str(yarn)}
    assert class_path_folders(environ) == [home / "conf", hadoop, yarn]  # $SPARK_HOME/conf
    assert cds_blockers(environ) == [home / "conf", hadoop]  # the empty one does not block
    assert cds_blockers({**environ, "SPARK_CONF_DIR": str(yarn)}) == [hadoop]
    assert class_path_folders({"SPARK_HOME": str(tmp_path / "nowhere")}) == []


def test_a_local_master_gets_its_jar_files_on_the_class_path_after_what_is_there() -> None:
    jars = "/s/delta.jar,file:///s/aws%20bundle.jar,hdfs://nn/udf.jar"
    remote, env = on_class_path(jars, {CLASS_PATH_VARIABLE: "/opt/hadoop/*"})
    assert remote == "hdfs://nn/udf.jar"  # not a file here: still fetched by the executor
    assert env == {CLASS_PATH_VARIABLE: "/opt/hadoop/*:/s/delta.jar:/s/aws bundle.jar"}
    assert on_class_path("/s/delta.jar", {}) == (None, {CLASS_PATH_VARIABLE: "/s/delta.jar"})
    assert on_class_path(None, {}) == (None, {})
    assert all(map(local_master, ("local", "local[2]", "local[*,3]")))
    assert not any(map(local_master, ("local-cluster[2,1,1024]", "spark://h:7077", "yarn")))
