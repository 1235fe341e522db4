"""Validate stage cost: profile + expectation suite + row rules against one plain Spark pass.

Same rows, same run. Generated churn rows (prescore.demo.datagen, with its defects) are written once as
Parquet under bench/.data/, read, spread over the cores and cached; every subject works on that
cached frame, in seconds, best of 3 after a warm-up (`full`: one call of each, see FULL_REPEATS);
each subject's note says how many Spark jobs one call of it launches:

- baseline: one aggregation computing the row count and the null count of every column;
- prescore validate: the batch profile (pass 1: up to five aggregations; pass 2: one), the shipped
  Great Expectations suite (SUMMARY results: counts for every expectation, a sample of unexpected
  values for the failed ones) and the row rules that decide the quarantine (null keys, ranges,
  duplicates), each collected to the driver as the stage does; Delta writes and the HTML report
  are left out (they do not grow with the rows);
- its parts alone: the profile, the suite, the row rules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from bench import DATA_DIR, Measurement, best_times, spark_settings
from prescore.config import load_usecase
from prescore.data.cleaning import REASON, flag_duplicates, flag_invalid_rows
from prescore.data.profile import ProfilePlan, compute_profile
from prescore.data.validation import load_suite, outcomes_of, suite_result
from prescore.demo.datagen import churn_chunks
from prescore.platform import tables
from prescore.platform.spark import get_spark

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from pyspark.sql import DataFrame, SparkSession

    from prescore.config import UseCase

BENCHMARK = "validate"
ROWS = {"small": 200_000, "full": 10_000_000}
CORES = 2
RUN_DATE = date(2024, 1, 1)
SEED = 42
REPEATS, WARMUPS = 3, 1
# At 10M rows one call of the stage takes minutes on 2 shared cores: `full` times each part once,
# after a warm-up of the baseline only (its codegen would otherwise be a visible share of it), and
# the whole stage is the sum of its three parts from that same round.
FULL_REPEATS, FULL_WARMUPS = 1, 0
FULL_NOTE = ("; one timed call", "; the sum of its parts' single calls")
BASELINE = "one pass: count + null counts"
VALIDATE = "prescore validate (profile + suite + row rules)"


def raw_files(size: str) -> Path:
    """Parquet folder of generated raw rows, written once per size."""
    target = DATA_DIR / f"validate-{size}"
    if not (target / "_DONE").exists():
        target.mkdir(parents=True, exist_ok=True)
        for index, chunk in enumerate(churn_chunks(ROWS[size], RUN_DATE, SEED)):
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            pq.write_table(table, target / f"part-{index:05d}.parquet", coerce_timestamps="us")
        (target / "_DONE").touch()
    return target


def null_counts(frame: DataFrame) -> Callable[[], object]:
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)), *[F.count_if(F.col(c).isNull()) for c in frame.columns]]
    return lambda: frame.agg(*aggs).collect()


def row_rules(frame: DataFrame, usecase: UseCase) -> Callable[[], object]:
    flagged = frame.transform(
        flag_invalid_rows, keys=usecase.keys, valid_range=usecase.cleaning.valid_range
    ).transform(flag_duplicates, keys=usecase.keys, event_time=usecase.event_time)
    return lambda: flagged.groupBy(REASON).count().collect()


PARTS = ("profile (2 passes)", "GE suite (SUMMARY)", "row rules (quarantine)")


def subjects(
    frame: DataFrame, usecase: UseCase, suite: ExpectationSuite, *, whole: bool = True
) -> dict[str, Callable[[], object]]:
    """The baseline, the whole stage (unless `whole` is false) and its parts, in turn order."""
    plan = ProfilePlan.for_usecase(usecase, frame.columns)
    parts: dict[str, Callable[[], object]] = dict(
        zip(
            PARTS,
            (
                lambda: compute_profile(frame, plan=plan),
                lambda: outcomes_of(suite_result(frame, suite)),
                row_rules(frame, usecase),
            ),
            strict=True,
        )
    )

    def stage() -> None:
        for part in parts.values():
            part()

    return {BASELINE: null_counts(frame), **({VALIDATE: stage} if whole else {}), **parts}


def in_job_group(
    spark: SparkSession, group: str, action: Callable[[], object]
) -> Callable[[], None]:
    """`action` with every Spark job it launches tagged `group`, so that they can be counted."""

    def tagged() -> None:
        spark.sparkContext.setJobGroup(group, group)
        try:
            action()
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]

    return tagged


def jobs_launched(spark: SparkSession, groups: list[str]) -> dict[str, int]:
    """Spark jobs launched under each job group (a job group per subject) since the start."""
    tracker = spark.sparkContext.statusTracker()
    return {g: len(tracker.getJobIdsForGroup(g)) for g in groups}


def run(size: str) -> list[Measurement]:
    from pyspark.sql import functions as F

    settings = spark_settings()
    usecase = load_usecase("churn", settings)
    suite = load_suite(settings.expectations_dir / f"{usecase.expectations}.json")
    spark = get_spark(settings)
    try:
        frame = (
            spark.read.parquet(str(raw_files(size)))
            .withColumn(tables.RUN_DATE, F.lit(RUN_DATE))
            .withColumn("_source_file", F.col("_metadata.file_name"))
            .repartition(CORES)
            .cache()
        )
        rows = frame.count()  # fill the cache outside the timings
        full = size == "full"
        named = subjects(frame, usecase, suite, whole=not full)
        groups = [f"bench-validate-{i}" for i in range(len(named))]
        tagged = {
            name: in_job_group(spark, group, action)
            for (name, action), group in zip(named.items(), groups, strict=True)
        }
        try:
            if full:
                tagged[BASELINE]()  # the baseline's warm-up (its codegen); the parts get none
                seconds = best_times(tagged, repeats=FULL_REPEATS, warmups=FULL_WARMUPS)
                calls = {name: FULL_REPEATS + (name == BASELINE) for name in named}
            else:
                seconds = best_times(tagged, repeats=REPEATS, warmups=WARMUPS)
                calls = dict.fromkeys(named, REPEATS + WARMUPS)
            launched = dict(zip(named, jobs_launched(spark, groups).values(), strict=True))
            jobs = {name: launched[name] / calls[name] for name in named}
            if full:  # the whole stage as the sum of its parts, timed in the same round
                seconds[VALIDATE] = sum(seconds[p] for p in PARTS)
                jobs[VALIDATE] = sum(jobs[p] for p in PARTS)
        finally:
            frame.unpersist()
    finally:
        spark.stop()
    return [
        Measurement(
            benchmark=BENCHMARK,
            subject=name,
            metric="time",
            value=value,
            unit="s",
            higher_is_better=False,
            baseline=None if name == BASELINE else BASELINE,
            note=f"{rows:,} cached rows, {len(frame.columns)} columns, local[{CORES}]; "
            f"{jobs[name]:g} Spark jobs per call" + (FULL_NOTE[name == VALIDATE] if full else ""),
        )
        for name in (BASELINE, VALIDATE, *PARTS)
        for value in [seconds[name]]
    ]
