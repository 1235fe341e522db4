"""Spark's Maven packages, resolved once at setup into a local folder: jars, not coordinates.

`spark-submit --packages` makes Ivy resolve the coordinates again on every start, even with every
jar cached (bench/README.md, startup). Setup (`python -m prescore.platform.jvm_setup`) resolves
each set of coordinates prescore asks for once, through Spark's own resolver, and keeps the jars
here; a task or a session then hands Spark the local files, less those Spark ships itself
(`not_in_spark`): on the class path of a local master's one JVM (`on_class_path`), else as
`--jars` / `spark.jars` for a cluster's executors to fetch. The coordinates stay the one source
of truth (`prescore.platform.spark.jars_packages`): a set is looked up by exactly its coordinates,
and one that was never resolved here falls back to `--packages` (a cluster deployment can use
those, but not with the state on an object store: Delta's S3 commit guard comes from setup only,
see prescore.platform.logstore).

    <jars dir>/files/<group>_<artifact>-<version>.jar    each jar once, shared by the sets
    <jars dir>/sets/<sha256 of the coordinates>.txt      the coordinates, then its jars in order

The jars dir is $PRESCORE_JARS_DIR, else <python prefix>/share/prescore/jars: the virtualenv (or
image) whose pyspark and delta-spark decide the coordinates. Every file is written to a temporary
name and renamed, the set's list last, so a reader sees a whole set or none.

No pyspark import at module level: the DAG file reads the store.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

JARS_VARIABLE = "PRESCORE_JARS_DIR"
# Settings that change what Ivy resolves, passed on to the resolving launcher.
RESOLVER_CONF = (
    "spark.jars.ivy",
    "spark.jars.ivySettings",
    "spark.jars.repositories",
    "spark.jars.excludes",
)


def jars_dir() -> Path:
    """The local jar store: $PRESCORE_JARS_DIR, else <sys.prefix>/share/prescore/jars."""
    named = os.environ.get(JARS_VARIABLE)
    return Path(named) if named else Path(sys.prefix) / "share" / "prescore" / "jars"


def coordinate_list(packages: str) -> list[str]:
    """The coordinates of a spark.jars.packages value, in order, each once."""
    return list(dict.fromkeys(p.strip() for p in packages.split(",") if p.strip()))


def _set_file(packages: str, folder: Path) -> Path:
    digest = hashlib.sha256(",".join(coordinate_list(packages)).encode()).hexdigest()
    return folder / "sets" / f"{digest[:32]}.txt"


def local_jars(packages: str, folder: Path | None = None) -> list[Path] | None:
    """The local jars resolved at setup for exactly these coordinates, or None if there are none
    (never resolved here, or a jar gone since), less those Spark ships itself (`not_in_spark`)."""
    folder = folder or jars_dir()
    try:
        first, *names = _set_file(packages, folder).read_text().splitlines()
    except (FileNotFoundError, ValueError):
        return None
    if first != ",".join(coordinate_list(packages)) or not names:
        return None
    jars = [folder / "files" / name for name in names]
    return not_in_spark(jars) if all(jar.is_file() for jar in jars) else None


def not_in_spark(jars: Sequence[Path]) -> list[Path]:
    """`jars` (named by Ivy, `<group>_<artifact>-<version>.jar`) less the artifacts Spark's own
    jars folder holds, in any version.

    Delta's dependencies bring older copies of Hadoop's client, Parquet, Jackson and Log4j, which
    Spark ships itself: its class loader asks Spark's class path first, so they would never be
    used, only copied to every executor and searched at every class lookup they miss.
    """
    shipped = spark_artifacts()
    return [
        jar for jar in jars if artifact_name(jar.name.partition("_")[2] or jar.name) not in shipped
    ]


def spark_home(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The Spark spark-submit runs: $SPARK_HOME, else the pyspark package's folder, found without
    importing pyspark; None without either."""
    home = environ.get("SPARK_HOME")
    if home:
        return Path(home)
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def spark_artifacts() -> frozenset[str]:
    """The artifacts of Spark's jars ($SPARK_HOME/jars, see spark_home)."""
    home = spark_home()
    jars = home.glob("jars/*.jar") if home else ()
    return frozenset(artifact_name(jar.name) for jar in jars)


_VERSIONED = re.compile(r"(.+?)-\d.*\.jar$")  # the artifact ends where the version starts


def artifact_name(file_name: str) -> str:
    """The artifact of `<artifact>-<version>.jar`: `zstd-jni` of `zstd-jni-1.5.7-7.jar`."""
    found = _VERSIONED.match(file_name)
    return found.group(1) if found else file_name.removesuffix(".jar")


def store_jars(packages: str, jars: Sequence[Path], folder: Path | None = None) -> list[Path]:
    """Copy the jars Spark resolved for `packages` into the store, and record the set."""
    folder = folder or jars_dir()
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    for jar in jars:
        target = files / jar.name
        if not target.is_file() or target.stat().st_size != jar.stat().st_size:
            write_atomically(target, jar.read_bytes())
    lines = [",".join(coordinate_list(packages)), *(jar.name for jar in jars)]
    set_file = _set_file(packages, folder)
    set_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(set_file, ("\n".join(lines) + "\n").encode())
    stored = local_jars(packages, folder)
    assert stored is not None  # just written
    return stored


def write_atomically(target: Path, content: bytes) -> None:
    """`content` to a temporary name beside `target`, then renamed over it."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def resolve_with_spark(packages: str, conf: dict[str, str] | None = None) -> list[Path]:
    """The jars Spark's own resolver (Ivy, as for --packages) picks for `packages`, in order.

    Starts a Spark launcher with spark.jars.packages (no SparkContext) and reads back the
    spark.jars it set: the resolved files in Ivy's jars folder.
    """
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    spark_conf = SparkConf(loadDefaults=False).set("spark.jars.packages", packages)
    for key in RESOLVER_CONF:
        if conf and key in conf:
            spark_conf.set(key, conf[key])
    gateway = launch_gateway(spark_conf)
    try:
        resolved = str(gateway.jvm.java.lang.System.getProperty("spark.jars") or "")
    finally:
        gateway.shutdown()
        process = getattr(gateway, "proc", None)
        if process is not None:  # the launcher's JVM ends when its stdin closes
            process.stdin.close()
            process.wait()
    jars = [Path(unquote(urlparse(uri).path)) for uri in resolved.split(",") if uri]
    if not jars:
        raise RuntimeError(f"Spark resolved no jar for {packages}")
    return jars


def ensure_local_jars(packages: str, conf: dict[str, str] | None = None) -> list[Path]:
    """The store's jars for `packages`, resolved through Spark and stored first if missing."""
    return local_jars(packages) or store_jars(packages, resolve_with_spark(packages, conf))


# spark-class puts this variable's entries last on the JVM's class path (after Spark's jars).
CLASS_PATH_VARIABLE = "SPARK_DIST_CLASSPATH"


def local_master(master: str) -> bool:
    """A master whose executor runs inside the driver's JVM: local, local[n], local[*], local[n,f]
    (not local-cluster, whose executors are JVMs of their own)."""
    return master == "local" or master.startswith("local[")


def on_class_path(
    jars: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[str | None, dict[str, str]]:
    """For a local master: (the jars it still needs as --jars / spark.jars, the environment that
    puts the others on its JVM's class path instead).

    Every jar in spark.jars is copied by the executor, a local one too, into a folder of its own
    before the first task (and deleted at exit): seconds per JVM for the AWS SDK's 690 MB bundle
    (bench/README.md, startup). On the class path the one JVM loads them where they are. They go
    in SPARK_DIST_CLASSPATH (after any entries it already has), which spark-class appends last:
    the driver's CDS archive, dumped without them, still maps. Only files: a remote jar stays.
    """
    named = [jar for jar in (jars or "").split(",") if jar]
    files = [jar for jar in named if "://" not in jar or jar.startswith("file://")]
    if not files:
        return jars, {}
    remote = ",".join(jar for jar in named if jar not in files) or None
    paths = [unquote(urlparse(jar).path) if jar.startswith("file://") else jar for jar in files]
    entries = [environ.get(CLASS_PATH_VARIABLE, ""), *paths]
    return remote, {CLASS_PATH_VARIABLE: os.pathsep.join(filter(None, entries))}


def cds_archive(folder: Path | None = None) -> Path:
    """The driver JVM's class-data-sharing archive (prescore.platform.cds) for this Spark and the
    folders spark-class puts on the driver's class path here (class_path_folders).

    A JVM maps an archive only on the class path it was dumped with, and a folder counts even
    empty: one archive per set of folders, so a SPARK_CONF_DIR set (or not) after setup finds
    none rather than one its JVM refuses."""
    from importlib.metadata import version

    folders = "\n".join(map(str, class_path_folders()))
    key = hashlib.sha256(folders.encode()).hexdigest()[:12]
    return (folder or jars_dir()) / "cds" / f"spark-{version('pyspark')}-driver-{key}.jsa"


def cds_java_options(folder: Path | None = None) -> str | None:
    """-XX:SharedArchiveFile=<archive> when setup made one for this class path and no folder on
    it holds files (cds_blockers); a JVM that finds it unusable (another JDK, say) ignores it
    and starts as without it."""
    archive = cds_archive(folder)
    return f"-XX:SharedArchiveFile={archive}" if archive.is_file() and not cds_blockers() else None


def class_path_folders(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The folders spark-class puts on the driver's class path that exist: Spark's conf folder
    ($SPARK_CONF_DIR, else $SPARK_HOME/conf), $HADOOP_CONF_DIR and $YARN_CONF_DIR."""
    home = spark_home(environ)
    conf = environ.get("SPARK_CONF_DIR") or (str(home / "conf") if home else None)
    named = (conf, environ.get("HADOOP_CONF_DIR"), environ.get("YARN_CONF_DIR"))
    return [Path(n) for n in dict.fromkeys(filter(None, named)) if Path(n).is_dir()]


def cds_blockers(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The class_path_folders holding files. A JVM neither dumps nor maps a class-data-sharing
    archive while a non-empty folder is on its class path (JDK 17: "Cannot have non-empty
    directory in paths"): with any of them the driver starts without one. Spark settings can
    go in conf/base.yaml instead of a spark-defaults.conf."""
    return [f for f in class_path_folders(environ) if any(f.iterdir())]
