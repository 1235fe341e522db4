"""The stage-like job bench_startup submits: a Delta session, one tiny Delta write and read.

    spark-submit ... bench/startup_job.py <table folder>

Prints `SESSION_READY <epoch s>` once the session is up and `FIRST_JOB_DONE <epoch s> <rows>` once
the Delta table is written and read back, the first Spark jobs a stage would run.
"""

from __future__ import annotations

import sys
import time

from prescore.config import load_settings
from prescore.platform.spark import get_spark


def main(table: str) -> None:
    spark = get_spark(load_settings())
    print(f"SESSION_READY {time.time()}", flush=True)
    spark.range(1).write.format("delta").mode("overwrite").save(table)
    rows = spark.read.format("delta").load(table).count()
    print(f"FIRST_JOB_DONE {time.time()} {rows}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
