"""The whole run: the churn score DAG through Airflow against the same stages in one process.

One deployment per benchmark run, in a temporary folder: a state folder and an AIRFLOW_HOME
(SQLite), as `make demo` deploys it (the `spark_default` connection on local[2], no retries,
conf/base.yaml, the jars and CDS archive setup made). Setup, timed apart: `prescore run` on
10,000 rows of the day before makes the first model @champion. Then, for each row count (small:
10k and 100k rows; full: also 1M), landed by `prescore datagen` on a day of its own:

- `airflow dags test prescore_churn_score <day>`: one spark-submit per task, as deployed;
- `prescore run` on the same day and rows (baseline): every stage in one process and one
  session. It also trains (the score DAG does not); the train stage is left out of its total.

Spark's event log is on for both, uncompressed, set as Java system properties in SPARK_SUBMIT_OPTS
(which SparkConf reads): a SPARK_CONF_DIR holding a spark-defaults.conf would put a non-empty
folder on the driver's class path, where the JVM refuses its class-data-sharing archive, and the
tasks would start without it (prescore.platform.cds); the run fails if any JVM says so.

Each task and each in-process stage is split into start-up, from its start to the submission of
its first Spark job, and work, from there to its end:

- a task starts and ends when Airflow's task instance does (its metadata database); its jobs
  are in the event log of the application named `prescore-churn-<task>`;
- an in-process stage starts at its `<stage>: churn for run_date` log line, the first one at the
  process start (so it carries the session start), and ends at its `<stage>: done in` line.

The DAG's total is the wall time of `airflow dags test` (Airflow's parsing and bookkeeping
included) without the retention task, which `prescore run` has no stage for; it is reported
apart. The ratio is the bench's (in-process / DAG: above 1 is better than the baseline); the
note gives DAG / in-process, the issue's figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench import BENCH_DIR, DATA_DIR, Measurement

BENCHMARK = "flow"
ROWS = {"small": (10_000, 100_000), "full": (10_000, 100_000, 1_000_000)}
CHAMPION_ROWS = 10_000
USECASE = "churn"
SCORE_DAG = f"prescore_{USECASE}_score"
RUN_DATE = date(2026, 11, 2)
ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
STEP_TIMEOUT = 3600
# Tasks without a stage in `prescore run`, and stages without a task in the score DAG.
DAG_ONLY = ("retention",)
RUN_ONLY = ("train",)

_LOG_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO [\w.]+: "
    r"(?P<stage>\w+): (?:(?P<start>\w+ for run_date \S+)|(?P<done>done in [\d.]+ s))$"
)


@dataclass(frozen=True)
class Window:
    """One task or stage: when it started and ended (epoch seconds) and its first Spark job."""

    start: float
    end: float
    first_job: float | None

    @property
    def startup(self) -> float:
        """Start to the first job's submission; the whole window if it ran no Spark job."""
        return (self.end if self.first_job is None else self.first_job) - self.start

    @property
    def work(self) -> float:
        return self.end - self.start - self.startup


# ---------------------------------------------------------------- pure helpers (tests/unit)


def read_event_log(lines: Iterable[str]) -> tuple[str, list[float]]:
    """(application name, submission times of its jobs in epoch seconds) from a Spark event log."""
    name, jobs = "", []
    for line in lines:
        head = line[:64]  # the event's name comes first; plans make some lines megabytes long
        if '"SparkListenerJobStart"' in head:
            jobs.append(json.loads(line)["Submission Time"] / 1000)
        elif '"SparkListenerApplicationStart"' in head:
            name = json.loads(line)["App Name"]
    return name, sorted(jobs)


def event_log_files(entry: Path) -> list[Path]:
    """The files of one application's event log: itself, or a rolling log's `events_<n>_...`
    parts in order (Spark 4 rolls by default: a folder `eventlog_v2_<app id>`)."""
    if entry.is_file():
        return [entry]
    parts = [p for p in entry.iterdir() if p.name.startswith("events_")]
    return sorted(parts, key=lambda p: int(p.name.split("_")[1]))


def _lines(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        with path.open() as lines:
            yield from lines


def first_job_in(jobs: Iterable[float], start: float, end: float) -> float | None:
    """The first job submitted from `start` to `end`, if any."""
    return min((t for t in jobs if start <= t <= end), default=None)


def stage_bounds(lines: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Stage -> (start, end) in epoch seconds, from the `<stage>: <usecase> for run_date <day>`
    and `<stage>: done in <s> s` lines prescore logs (asctime in the local time zone)."""
    starts: dict[str, float] = {}
    bounds = {}
    for line in lines:
        found = _LOG_LINE.match(line.strip())
        if found is None:
            continue
        at = datetime.strptime(found["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if found["start"]:
            starts[found["stage"]] = at
        elif found["stage"] in starts:
            bounds[found["stage"]] = (starts[found["stage"]], at)
    return bounds


def in_process_windows(
    bounds: Mapping[str, tuple[float, float]], jobs: list[float], process_start: float
) -> dict[str, Window]:
    """Each stage's window and first job; the first stage starts with the process."""
    windows = {}
    for i, (stage, (start, end)) in enumerate(sorted(bounds.items(), key=lambda b: b[1])):
        start = process_start if i == 0 else start
        windows[stage] = Window(start, end, first_job_in(jobs, start, end))
    return windows


def utc_seconds(stamp: str) -> float:
    """Epoch seconds of a timestamp Airflow stored (UTC, with or without an offset)."""
    parsed = datetime.fromisoformat(stamp)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


# ---------------------------------------------------------------- one deployment


# What a JVM prints when it cannot map the CDS archive it was given (HotSpot's own warning).
CDS_REFUSED = "Unable to use shared archive"


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class Deployment:
    """A state folder, an AIRFLOW_HOME and a Spark event log folder under `base`."""

    def __init__(self, base: Path) -> None:
        self.base, self.state, self.home = base, base / "state", base / "airflow"
        self.events = base / "events"
        for folder in (self.state, self.home, self.events):
            folder.mkdir(parents=True, exist_ok=True)
        event_log = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": self.events.as_uri(),
            "spark.eventLog.compress": "false",
        }
        self.log = base / "commands.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "PRESCORE_", "MLFLOW_", "SPARK_"))
        }
        self.env = env | {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
            "PRESCORE_TASK_RETRIES": "0",
            "PRESCORE_STATE_DIR": str(self.state),
            "PRESCORE_SPARK_MASTER": "local[2]",  # `prescore run`; the DAG's is the connection's
            "PRESCORE_HMAC_KEY": "bench-only-hmac-key",
            "SPARK_SUBMIT_OPTS": " ".join(f"-D{k}={v}" for k, v in event_log.items()),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
            # The code of this tree, in Airflow's DAG file and in `prescore`.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
        }

    def run(self, *args: str) -> float:
        """Run a command to completion (it must succeed); its wall time in seconds."""
        started = time.perf_counter()
        done = subprocess.run(
            args,
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        elapsed = time.perf_counter() - started
        with self.log.open("a") as log:
            log.write(f"\n==== {' '.join(args)} ({elapsed:.1f} s)\n{done.stdout}")
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}; see {self.log}")
        if CDS_REFUSED in done.stdout:  # the figures would not be those of a deployment
            raise RuntimeError(f"{' '.join(args)}: a JVM refused the CDS archive; see {self.log}")
        self.output = done.stdout
        return elapsed

    def prescore(self, command: str, day: date, *extra: str) -> float:
        args = ("--usecase", USECASE, "--run-date", day.isoformat(), *extra)
        return self.run(str(BIN / "prescore"), command, *args)

    def event_logs(self) -> dict[str, list[float]]:
        """Application name -> its jobs' submission times, from every event log so far."""
        logs = {}
        for entry in sorted(self.events.iterdir()):
            name, jobs = read_event_log(_lines(event_log_files(entry)))
            logs[name] = jobs
        return logs

    def task_windows(self, dag_id: str) -> dict[str, Window]:
        """The tasks of the DAG's latest run: Airflow's start and end, and the first Spark job."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "select task_id, state, start_date, end_date from task_instance where dag_id = ? "
                "and run_id = (select run_id from dag_run where dag_id = ? order by id desc limit 1)",
                (dag_id, dag_id),
            ).fetchall()
        failed = {task: state for task, state, *_ in rows if state != "success"}
        if failed or not rows:
            raise RuntimeError(f"{dag_id}: tasks not successful: {failed or 'none ran'}")
        logs = self.event_logs()
        windows = {}
        for task, _, started, ended in rows:
            start, end = utc_seconds(started), utc_seconds(ended)
            jobs = logs.get(f"prescore-{USECASE}-{task}", [])
            windows[task] = Window(start, end, first_job_in(jobs, start, end))
        return dict(sorted(windows.items(), key=lambda w: w[1].start))


# ---------------------------------------------------------------- measurements


@dataclass(frozen=True)
class FlowRun:
    rows: int
    dag_wall: float
    dag_tasks: dict[str, Window]
    run_wall: float
    run_stages: dict[str, Window]
    setup: float
    load_before: str
    load_after: str


def make_champion(dep: Deployment, day: date) -> float:
    """Setup: Airflow's database, and `prescore run` on CHAMPION_ROWS rows of `day`, whose
    model becomes the first @champion; its wall time."""
    started = time.perf_counter()
    dep.run(str(BIN / "airflow"), "db", "migrate")
    dep.prescore("datagen", day, "--rows", str(CHAMPION_ROWS))
    dep.prescore("run", day)
    return time.perf_counter() - started


def measure(dep: Deployment, rows: int, day: date, setup: float) -> FlowRun:
    """The score DAG, then `prescore run`, on the same `rows` landed for `day`."""
    dep.prescore("datagen", day, "--rows", str(rows))
    shutil.rmtree(dep.events)
    dep.events.mkdir()
    load_before = load()
    dag_wall = dep.run(str(BIN / "airflow"), "dags", "test", SCORE_DAG, day.isoformat())
    dag_tasks = dep.task_windows(SCORE_DAG)
    shutil.rmtree(dep.events)
    dep.events.mkdir()
    run_start = time.time()
    run_wall = dep.prescore("run", day)
    [jobs] = dep.event_logs().values()
    run_stages = in_process_windows(stage_bounds(dep.output.splitlines()), jobs, run_start)
    return FlowRun(rows, dag_wall, dag_tasks, run_wall, run_stages, setup, load_before, load())


def label(rows: int) -> str:
    return f"{rows // 1_000_000}M rows" if rows >= 1_000_000 else f"{rows // 1000}k rows"


def measurements(run: FlowRun) -> list[Measurement]:
    """Totals, then each task's and each in-process stage's start-up and work."""
    rows = label(run.rows)
    dag, inproc = f"airflow dags test, {rows}", f"prescore run, {rows}"
    dag_only = sum(run.dag_tasks[t].end - run.dag_tasks[t].start for t in DAG_ONLY)
    run_only = sum(run.run_stages[s].end - run.run_stages[s].start for s in RUN_ONLY)
    dag_total, run_total = run.dag_wall - dag_only, run.run_wall - run_only
    loads = f"load {run.load_before} -> {run.load_after} (1, 5, 15 min)"
    in_tasks = sum(w.end - w.start for w in run.dag_tasks.values())
    startups = sum(w.startup for t, w in run.dag_tasks.items() if t not in DAG_ONLY)
    out = [
        Measurement(
            BENCHMARK,
            inproc,
            "total",
            run_total,
            "s",
            False,
            note=f"one process, without train ({run_only:.1f} s; wall {run.run_wall:.1f} s); "
            f"setup {run.setup:.0f} s; {loads}",
        ),
        Measurement(
            BENCHMARK,
            dag,
            "total",
            dag_total,
            "s",
            False,
            baseline=inproc,
            note=f"DAG / in-process {dag_total / run_total:.2f}; without retention "
            f"({dag_only:.1f} s; wall {run.dag_wall:.1f} s); task start-ups {startups:.1f} s; "
            f"Airflow outside tasks {run.dag_wall - in_tasks:.1f} s; {loads}",
        ),
    ]
    for name, window in run.dag_tasks.items():
        stage = run.run_stages.get(name)
        for metric, value in (("start-up", window.startup), ("work", window.work)):
            baseline = f"stage {name} in process, {rows}" if stage else None
            note = "no Spark job" if window.first_job is None else ""
            out.append(
                Measurement(
                    BENCHMARK,
                    f"task {name}, {rows}",
                    metric,
                    value,
                    "s",
                    False,
                    baseline,
                    note=note,
                )
            )
    first_stage = next(iter(run.run_stages))
    for name, window in run.run_stages.items():
        for metric, value in (("start-up", window.startup), ("work", window.work)):
            notes = (
                ["from the process start"] if name == first_stage and metric == "start-up" else []
            )
            notes += ["no Spark job"] if window.first_job is None else []
            note = "; ".join(notes)
            out.append(
                Measurement(
                    BENCHMARK,
                    f"stage {name} in process, {rows}",
                    metric,
                    value,
                    "s",
                    False,
                    note=note,
                )
            )
    return out


def progress(flow: FlowRun) -> str:
    """One size's figures, printed as soon as they are measured (a long run may be cut short)."""
    lines = [
        f"  {label(flow.rows)}: dags test {flow.dag_wall:.1f} s, prescore run {flow.run_wall:.1f} s"
    ]
    for name, w in flow.dag_tasks.items():
        lines.append(f"    task {name:<10} start-up {w.startup:6.1f} s  work {w.work:6.1f} s")
    for name, w in flow.run_stages.items():
        lines.append(f"    stage {name:<9} start-up {w.startup:6.1f} s  work {w.work:6.1f} s")
    return "\n".join(lines)


def run(size: str) -> list[Measurement]:
    """One deployment for the run: the champion once, then each row count on its own day."""
    folder = DATA_DIR / "flow"
    folder.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"{size}-", dir=folder))
    print(f"bench flow: deployment in {base}", file=sys.stderr, flush=True)
    dep = Deployment(base)
    setup = make_champion(dep, RUN_DATE - timedelta(days=1))
    out = []
    for i, rows in enumerate(ROWS[size]):
        flow = measure(dep, rows, RUN_DATE + timedelta(days=i), setup)
        print(progress(flow), file=sys.stderr, flush=True)
        out += measurements(flow)
    shutil.rmtree(base)  # kept on failure, for its commands.log
    return out
