"""Delta's commit guard on S3: ConditionalPutLogStore.java (beside this file), built at setup.

Delta commits version N of a table by creating `_delta_log/<N>.json` only if it is absent. Its
default LogStore for s3a:// has no put-if-absent and guards one JVM only, so two drivers writing
one table (a backfill beside the schedule, two use cases on the shared publish_log) can both
write version N and one commit is lost. prescore's LogStore creates each commit file with S3's
conditional put (If-None-Match: *): the second writer gets a Delta conflict instead.

Setup (`python -m prescore.platform.jvm_setup`) compiles it with `javac` against the jars it
resolved, into the local jar store, and lists the jar with that set of coordinates: whatever
loads the set (a task's --jars, a session's spark.jars) loads the LogStore, and
`prescore.platform.spark` turns it on for s3a://.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from prescore.platform.jars import coordinate_list, jars_dir, store_jars, write_atomically

LOGSTORE_CLASS = "prescore.delta.ConditionalPutLogStore"
LOGSTORE_CONF = "spark.delta.logStore.s3a.impl"
SOURCE = Path(__file__).with_name("ConditionalPutLogStore.java")
JAR_PREFIX = "prescore-logstore-"


def logstore_jar_name() -> str:
    """The jar's file name at setup, which changes with its source: setup rebuilds a stale one."""
    return f"{JAR_PREFIX}{hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]}.jar"


def holds_logstore(jars: Sequence[Path]) -> bool:
    """Whether setup listed a LogStore jar in a set (by prefix: a task, running from prescore's
    zipped bundle, has no source to hash)."""
    return any(jar.name.startswith(JAR_PREFIX) for jar in jars)


def needs_logstore(packages: str) -> bool:
    """Whether a set of coordinates reaches S3 (hadoop-aws), and so needs the commit guard."""
    return any(c.startswith("org.apache.hadoop:hadoop-aws:") for c in coordinate_list(packages))


def with_logstore(packages: str, jars: Sequence[Path]) -> list[Path]:
    """The set's jars with this source's LogStore among them: built and recorded with the set
    if missing (in place of one built from an older source)."""
    if any(jar.name == logstore_jar_name() for jar in jars):
        return list(jars)
    resolved = [jar for jar in jars if not jar.name.startswith(JAR_PREFIX)]
    return store_jars(packages, [*resolved, build_logstore_jar(resolved)])


def build_logstore_jar(classpath: Sequence[Path], folder: Path | None = None) -> Path:
    """Compile the LogStore against `classpath` and pyspark's jars; the jar in the jar store."""
    target = (folder or jars_dir()) / "files" / logstore_jar_name()
    if target.is_file():
        return target
    home = os.environ.get("JAVA_HOME")  # the JDK Spark runs on, as scripts/check_java.sh finds it
    javac = str(Path(home) / "bin" / "javac") if home else shutil.which("javac")
    if javac is None or not Path(javac).is_file():
        raise RuntimeError(
            "javac not found: prescore compiles Delta's S3 commit guard at setup "
            "(install a JDK 17, not only a JRE, then run `make setup` again)"
        )
    pyspark_jars = Path(str(importlib.metadata.distribution("pyspark").locate_file("pyspark/jars")))
    path = os.pathsep.join([*(str(jar) for jar in classpath), str(pyspark_jars / "*")])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as build:
        command = [javac, "--release", "17", "-d", build, "-cp", path, str(SOURCE)]
        compiled = subprocess.run(command, capture_output=True, text=True, check=False)
        if compiled.returncode != 0:
            raise RuntimeError(f"javac could not compile {SOURCE.name}:\n{compiled.stderr}")
        jar = io.BytesIO()
        with zipfile.ZipFile(jar, "w") as archive:
            for class_file in sorted(Path(build).rglob("*.class")):
                archive.write(class_file, class_file.relative_to(build).as_posix())
    write_atomically(target, jar.getvalue())
    return target
