"""`make demo`'s DAG runs (steps 2/5 to 4/5 of scripts/demo.sh), through Airflow in one process.

Each run is Airflow's `DAG.test`, what `airflow dags test` runs: one spark-submit per task on the
`spark_default` connection, recorded in the metadata database. Three `airflow dags test` commands
would each start Airflow and build its in-process execution API anew; here both happen once.

    python scripts/demo_dags.py USECASE RUN_DATE

Airflow's own output goes to stdout and stderr (demo.sh appends them to its log); the steps and
each run's task states go to file descriptor 3 (the terminal). Exits 1 at the first run with a
task that did not succeed, after printing its states.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

from airflow.utils.cli import get_bagged_dag

DATA_TASKS = "ingest|validate|clean"  # a regex matched against whole task ids


def run(
    dag_id: str, logical_date: datetime, out: TextIO, *, only: str = "", skip: str = ""
) -> bool:
    """One run of the DAG for the date, the tasks `only` leaves out or `skip` names marked
    successful without running; prints each task's final state, True if all succeeded."""
    marked = f"(?!({only})$).*" if only else skip
    dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
    dag_run = dag.test(logical_date=logical_date, mark_success_pattern=marked or None)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    for task_id in dag.task_ids:
        state = states.get(task_id)
        was_marked = bool(marked) and re.fullmatch(marked, task_id) is not None
        shown = f"marked {state}, not run" if was_marked else state
        print(f"  {task_id:<10} {shown}", file=out)
    return bool(states) and all(state == "success" for state in states.values())


def main(usecase: str, run_date: str, out: TextIO) -> int:
    score_dag, train_dag = f"prescore_{usecase}_score", f"prescore_{usecase}_train"
    day = datetime.fromisoformat(run_date).replace(tzinfo=UTC)
    log = os.environ["DEMO_LOG"]
    steps = (
        (
            f"2/5 clean data for training: {score_dag} ingest, validate, clean (log: {log})",
            score_dag,
            {"only": DATA_TASKS},
        ),
        (f"3/5 train: {train_dag} for {run_date}", train_dag, {}),
        (
            f"4/5 score and publish: {score_dag} for {run_date} (data tasks from step 2)",
            score_dag,
            {"skip": DATA_TASKS},
        ),
    )
    for title, dag_id, marked in steps:
        print(f"\n==> {title}", file=out)
        if not run(dag_id, day, out, **marked):
            return 1
    return 0


if __name__ == "__main__":
    with os.fdopen(3, "w", buffering=1) as terminal:
        sys.exit(main(sys.argv[1], sys.argv[2], terminal))
