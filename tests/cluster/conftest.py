"""A real Spark standalone cluster on 127.0.0.1, started from the pyspark package, per test module,
and `spark-submit` jobs run against it (or against local[N]) as separate processes.

Every JVM here is the leader of its own process group under GNU `timeout -s KILL`, so nothing
outlives the tests even if pytest itself is killed; teardown kills the groups. Everything listens
on 127.0.0.1 only (SPARK_LOCAL_IP, --host), on free ports; logs and work folders live under tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyspark
import pytest

SPARK_HOME = Path(pyspark.__file__).resolve().parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
SPARK_SUBMIT = SPARK_HOME / "bin" / "spark-submit"
HARD_TIMEOUT_S = 900  # the cluster's daemons kill themselves after this, whatever pytest does
START_TIMEOUT_S = 180.0  # JVM start and registration are slow on a loaded two-core machine
WORKERS = 2


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def spark_env(**extra: str) -> dict[str, str]:
    """The environment of every Spark process here: our Spark, loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", **extra)
    return env


def spawn(
    command: list[str],
    *,
    env: dict[str, str],
    log: Path,
    stderr: Path | None = None,
    hard_timeout_s: float = HARD_TIMEOUT_S,
) -> subprocess.Popen[bytes]:
    """Start `command` as the leader of a new process group that is killed after `hard_timeout_s`.

    GNU timeout (without --foreground) signals its whole process group, so the JVM and anything
    it forks (executors, a spark-submit driver's Python) go with it. Output goes to `log`
    (stderr too, unless `stderr` names its own file); the working folder is the log's folder.
    """
    with log.open("wb") as out, (stderr or log).open("ab") as err:
        return subprocess.Popen(
            ["timeout", "-s", "KILL", str(int(hard_timeout_s)), *command],
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=err if stderr else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group that `spawn` started (its leader's pid is the group id)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line) of every process we can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # exited while we looked
        ppid, pgid = stat[stat.rindex(")") + 2 :].split()[1:3]
        found[int(entry.name)] = (int(ppid), int(pgid), cmdline.decode(errors="replace"))
    return found


# ---------------------------------------------------------------- the cluster


@dataclass
class Daemon:
    """One master or worker JVM (the leader of its own process group) and its web UI."""

    name: str
    process: subprocess.Popen[bytes]
    webui_port: int
    log: Path
    work_dir: Path | None = None  # a worker's: one folder per application and executor

    @property
    def webui(self) -> str:
        return f"http://127.0.0.1:{self.webui_port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self) -> dict[str, Any]:
        """The daemon's own JSON (/json/): a worker lists its running and finished executors."""
        return dict(get_json(f"{self.webui}/json/"))

    def python_daemons(self) -> list[int]:
        """pids of the `pyspark.daemon` processes of this worker's executors.

        An executor starts its Python daemon with its first Python task. The daemon moves itself
        to a process group of its own, so it is found through its parent, the executor JVM,
        which stays in the worker's group.
        """
        procs = _processes()
        group = self.process.pid
        return [
            pid
            for pid, (ppid, pgid, cmdline) in procs.items()
            if "pyspark.daemon" in cmdline and group in (pgid, procs.get(ppid, (0, 0, ""))[1])
        ]

    def kill(self) -> None:
        """SIGKILL the JVM, its executors and their Python daemons at once: a lost machine."""
        daemons = self.python_daemons() if self.alive else []
        kill_group(self.process)
        for pid in daemons:  # they would exit on stdin EOF by themselves; do not leave it to them
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    daemons: list[Daemon],
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Poll `condition`; fail with the daemons' log tails if one dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        dead = [d.name for d in daemons if not d.alive]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout_s:.0f} s"
            logs = "\n".join(f"--- {d.name} ({d.log}):\n{log_tail(d.log)}" for d in daemons)
            pytest.fail(f"waiting for {what}: {reason}\n{logs}")
        time.sleep(0.5)


def _daemon_env(root: Path, **extra: str) -> dict[str, str]:
    return spark_env(
        SPARK_CONF_DIR=str(root / "conf"),  # empty: no spark-defaults or spark-env from elsewhere
        SPARK_LOG_DIR=str(root / "logs"),
        SPARK_DAEMON_MEMORY="512m",
        # The master's REST submission server would take port 6066 on every run: not needed.
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
        **extra,
    )


@dataclass
class StandaloneCluster:
    """A master at `url` (web UI at master.webui) and its workers, all on 127.0.0.1."""

    root: Path
    port: int
    master: Daemon
    workers: list[Daemon] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        """The master's view (workers, apps) from its /json/, or {} while it does not answer."""
        try:
            return self.master.status()
        except (OSError, ValueError):
            return {}

    def alive_workers(self) -> set[str]:
        """Web UI addresses of the workers the master counts ALIVE."""
        workers = self.status().get("workers", [])
        return {w["webuiaddress"] for w in workers if w["state"] == "ALIVE"}

    def start_worker(self) -> Daemon:
        name, port = f"worker-{len(self.workers) + 1}", free_port()
        work_dir = self.root / name
        work_dir.mkdir()
        command = [
            *(str(SPARK_CLASS), "org.apache.spark.deploy.worker.Worker", self.url),
            *("--host", "127.0.0.1", "--cores", "1", "--memory", "1g"),
            *("--webui-port", str(port), "--work-dir", str(work_dir)),
        ]
        env = _daemon_env(self.root, SPARK_WORKER_DIR=str(work_dir))
        log = self.root / "logs" / f"{name}.log"
        worker = Daemon(name, spawn(command, env=env, log=log), port, log, work_dir)
        self.workers.append(worker)
        return worker

    def ensure_workers(self, count: int = WORKERS) -> None:
        """Start workers until `count` run (a test may have killed one); wait until registered."""
        while sum(w.alive for w in self.workers) < count:
            self.start_worker()
        live = [w for w in self.workers if w.alive]
        wait_until(
            lambda: {w.webui for w in live} <= self.alive_workers(),
            f"{count} workers registered with the master",
            [self.master, *live],
        )

    def stop(self) -> None:
        for daemon in [*self.workers, self.master]:
            daemon.kill()


@pytest.fixture(scope="module")
def standalone_cluster(
    object_store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandaloneCluster]:
    """A master and two one-core, 1 GiB workers; their process groups are killed afterwards.

    The workers start in the environment that names the session's S3 server and its keys (the
    object_store fixture), as a deployment's hosts do: their executors' S3 clients read it."""
    if not SPARK_CLASS.is_file():
        pytest.skip(
            f"no spark-class in the pyspark package ({SPARK_CLASS}): cannot start a cluster"
        )
    root = tmp_path_factory.mktemp("standalone")
    (root / "logs").mkdir()
    (root / "conf").mkdir()
    port, webui_port = free_port(), free_port()
    command = [
        *(str(SPARK_CLASS), "org.apache.spark.deploy.master.Master"),
        *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui_port)),
    ]
    log = root / "logs" / "master.log"
    master = Daemon("master", spawn(command, env=_daemon_env(root), log=log), webui_port, log)
    cluster = StandaloneCluster(root, port, master)
    try:
        wait_until(lambda: cluster.status().get("status") == "ALIVE", "the master", [master])
        cluster.ensure_workers()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(standalone_cluster: StandaloneCluster) -> StandaloneCluster:
    """The module's cluster with both workers alive (an earlier test may have killed one)."""
    standalone_cluster.ensure_workers()
    return standalone_cluster


# ---------------------------------------------------------------- spark-submit


@dataclass
class SubmittedJob:
    """One `spark-submit` process group: stdout in stdout.log, Spark's log in driver.log."""

    process: subprocess.Popen[bytes]
    master: str
    logs: Path
    timeout_s: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def driver_log(self) -> Path:
        return self.logs / "driver.log"

    @property
    def stdout(self) -> str:
        return (self.logs / "stdout.log").read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def wait(self) -> float:
        """Wall seconds from submit to exit; fails the test (with the driver log) on a failure."""
        try:
            code = self.process.wait(timeout=max(1.0, self.timeout_s - self.elapsed()))
        except subprocess.TimeoutExpired:
            kill_group(self.process)
            pytest.fail(
                f"job on {self.master} still running after {self.timeout_s:.0f} s:\n"
                f"{log_tail(self.driver_log)}"
            )
        wall_s = self.elapsed()
        if code != 0:
            pytest.fail(f"job on {self.master} exited {code}:\n{log_tail(self.driver_log, 80)}")
        return wall_s


SparkSubmit = Callable[..., SubmittedJob]


@pytest.fixture(scope="module")
def spark_submit() -> Iterator[SparkSubmit]:
    """`spark_submit(args, master=..., env=..., logs=...)` starts `spark-submit --master M args`;
    any job still running at the end of the module is killed."""
    jobs: list[SubmittedJob] = []

    def submit(
        args: list[str], *, master: str, env: dict[str, str], logs: Path, timeout_s: float = 300
    ) -> SubmittedJob:
        logs.mkdir(parents=True, exist_ok=True)
        command = [str(SPARK_SUBMIT), "--master", master, *args]
        process = spawn(
            command,
            env=spark_env(**env),
            log=logs / "stdout.log",
            stderr=logs / "driver.log",
            hard_timeout_s=timeout_s + 60,
        )
        jobs.append(SubmittedJob(process, master, logs, timeout_s))
        return jobs[-1]

    yield submit
    for job in jobs:
        kill_group(job.process)
