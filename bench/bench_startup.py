"""Start-up of one stage task: process start to its first Spark job done, as a DAG task runs it.

One trivial stage-like job (bench/startup_job.py: a Delta session, write and read a one-row Delta
table) is spark-submitted the way a task of the score DAG submits it (master local[2], the
settings of conf/base.yaml as --conf, prescore as --py-files), round after round, the subjects
taking turns (ABC ABC ...), after one untimed round:

- baseline `--packages, fresh bundle`: what a task did before issue 22: zip the package into a
  new temporary folder, then spark-submit --packages <Delta's coordinate> (Ivy resolves it).
- `--jars local, cached bundle`: what a task does now: the zip cached for this code version,
  spark-submit --jars <the local jars resolved at setup for that coordinate>.
- `... + CDS`: the same with the driver's JVM on a class-data-sharing archive of its own classes
  (-XX:SharedArchiveFile, dumped by one earlier run with -XX:ArchiveClassesAtExit: Java 17 has
  no -XX:+AutoCreateSharedArchive, which is JDK 19+). Measured to decide whether to keep it.
- `... + CDS + C1 only`: the same with the JIT stopped at its first tier
  (-XX:TieredStopAtLevel=1): less compiling at start, slower code after. Measured, not applied.

And the in-process session the test suite and `prescore run` start (plain python, get_spark):
`session, spark.jars.packages` (baseline) against `session, spark.jars local`.

The clock starts before the bundle is made (the task's own work) and stops when the job prints
that its Delta write and read are done; the medians count, the note gives the spread. Setup must
have resolved the jars (`make setup`); the benchmark resolves them itself if not (untimed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import BENCH_DIR, DATA_DIR, Measurement
from prescore.config import HOME_VARIABLE, PROJECT_ROOT, load_settings
from prescore.platform.bundle import build_bundle, cached_bundle
from prescore.platform.jars import JARS_VARIABLE, ensure_local_jars
from prescore.platform.spark import JAR_KEYS, delta_package, spark_conf

BENCHMARK = "startup"
REPEATS = {"small": 3, "full": 6}
JOB = BENCH_DIR / "startup_job.py"
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
MASTER = "local[2]"
PACKAGES = "--packages, fresh bundle"
LOCAL = "--jars local, cached bundle"
CDS = "--jars local, cached bundle + CDS"
CDS_C1 = "--jars local, cached bundle + CDS + C1 only"
SESSION_PACKAGES = "session, spark.jars.packages"
SESSION_LOCAL = "session, spark.jars local"
SESSION_CODE = (
    "import sys; sys.argv = ['job', sys.argv[1]]; import runpy; "
    f"runpy.run_path({str(JOB)!r}, run_name='__main__')"
)


def _job_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        HOME_VARIABLE: str(PROJECT_ROOT),  # as a task sets it: prescore may come from the zip
    }


def _submit_conf() -> list[str]:
    """The --conf list a task passes (conf/base.yaml), the jars left to --packages/--jars."""
    conf = {k: v for k, v in spark_conf(load_settings()).items() if k not in JAR_KEYS}
    conf.pop("spark.driver.extraJavaOptions", None)  # CDS only where a subject asks for it
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


def _timed(command: Callable[[], list[str]], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first job done, of which the session start) from before `command()`."""
    started = time.time()
    done = subprocess.run(command(), env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"startup job failed:\n{(done.stdout + done.stderr)[-3000:]}")
    marks = {
        line.split()[0]: float(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith(("SESSION_READY ", "FIRST_JOB_DONE "))
    }
    return marks["FIRST_JOB_DONE"] - started, marks["SESSION_READY"] - started


def cds_archive(folder: Path, submit: Callable[[list[str]], list[str]]) -> Path:
    """A dynamic CDS archive of the driver's classes, dumped at the exit of one job run."""
    archive = folder / "spark-driver.jsa"
    if not archive.is_file():
        options = f"spark.driver.extraJavaOptions=-XX:ArchiveClassesAtExit={archive}"
        subprocess.run(submit(["--conf", options]), env=_job_env(), check=True, timeout=600)
    return archive


def run(size: str) -> list[Measurement]:
    folder = DATA_DIR / "startup"
    folder.mkdir(parents=True, exist_ok=True)
    table = str(folder / "table")
    coordinates = delta_package()
    jars = ",".join(str(jar) for jar in ensure_local_jars(coordinates))  # setup's work
    conf = _submit_conf()

    def submit(extra: list[str], *, bundle: Path | None = None, use_jars: bool = True) -> list[str]:
        libraries = ["--jars", jars] if use_jars else ["--packages", coordinates]
        bundle = bundle or cached_bundle(folder / "bundles")
        return [
            *(str(SPARK_SUBMIT), "--master", MASTER, "--name", "prescore-startup", *conf),
            *(*libraries, "--py-files", str(bundle), *extra, str(JOB), table),
        ]

    def fresh_bundle() -> Path:
        return build_bundle(Path(tempfile.mkdtemp(prefix="bundle-", dir=folder)))

    archive = cds_archive(folder, lambda extra: submit(extra))
    with_cds = ["--conf", f"spark.driver.extraJavaOptions=-XX:SharedArchiveFile={archive}"]
    with_cds_c1 = [*with_cds[:-1], f"{with_cds[-1]} -XX:TieredStopAtLevel=1"]
    no_jars = {**_job_env(), JARS_VARIABLE: str(folder / "no-jars")}  # resolve --packages
    session = [sys.executable, "-c", SESSION_CODE, table]
    subjects: dict[str, tuple[Callable[[], list[str]], dict[str, str]]] = {
        PACKAGES: (lambda: submit([], bundle=fresh_bundle(), use_jars=False), _job_env()),
        LOCAL: (lambda: submit([]), _job_env()),
        CDS: (lambda: submit(with_cds), _job_env()),
        CDS_C1: (lambda: submit(with_cds_c1), _job_env()),
        SESSION_PACKAGES: (lambda: session, no_jars),
        SESSION_LOCAL: (lambda: session, _job_env()),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in subjects}
    load_before = os.getloadavg()[0]
    for repeat in range(REPEATS[size] + 1):  # the first round is a warm-up
        for name, (command, env) in subjects.items():
            time.sleep(1.0)
            measured = _timed(command, env)
            if repeat:
                times[name].append(measured)
    load_after = os.getloadavg()[0]
    baselines = {PACKAGES: None, LOCAL: PACKAGES, CDS: PACKAGES, CDS_C1: PACKAGES}
    baselines |= {SESSION_PACKAGES: None, SESSION_LOCAL: SESSION_PACKAGES}
    out = []
    for name, runs in times.items():
        first_job = [total for total, _ in runs]
        note = (
            f"median of {len(runs)}, interleaved; min {min(first_job):.2f} max {max(first_job):.2f} s;"
            f" session up at {statistics.median(s for _, s in runs):.2f} s (median);"
            f" load {load_before:.1f} -> {load_after:.1f}"
        )
        out.append(
            Measurement(
                benchmark=BENCHMARK,
                subject=name,
                metric="start to first job done",
                value=statistics.median(first_job),
                unit="s",
                higher_is_better=False,
                baseline=baselines[name],
                note=note,
            )
        )
    return out
