"""A process that writes one run_date of a Delta table through `tables.replace_run`, the writer
every stage uses, holding its last task back so that a test can act mid-write.

    python delta_writer.py TABLE RUN_DATE MARKER HOLD_SECONDS GO_FILE

Settings come from PRESCORE_ENV / PRESCORE_STATE_DIR. Prints "ready" once its Spark session is up,
waits for GO_FILE to exist, writes ROWS rows tagged MARKER in 4 tasks (the last one sleeps
HOLD_SECONDS first, after the others have written their files), and prints "committed".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from prescore.config import load_settings
from prescore.platform import tables
from prescore.platform.spark import get_spark

ROWS = 400
TASKS = 4


def main(table: str, run_date: date, marker: str, hold: float, go: Path) -> None:
    settings = load_settings()
    spark = get_spark(settings)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.05)

    def held(index: int, rows: Iterator[tuple]) -> Iterator[tuple]:
        if index == TASKS - 1:
            time.sleep(hold)
        yield from rows

    data = [(i, marker, run_date) for i in range(ROWS)]
    rdd = spark.sparkContext.parallelize(data, TASKS).mapPartitionsWithIndex(held)
    frame = spark.createDataFrame(rdd, "id long, marker string, run_date date")
    tables.replace_run(frame, settings, table, run_date)
    print("committed", flush=True)


if __name__ == "__main__":
    table, run_date, marker, hold, go = sys.argv[1:]
    main(table, date.fromisoformat(run_date), marker, float(hold), Path(go))
