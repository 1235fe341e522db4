"""Validate stage cost: profile + expectation suite + row rules against one plain Spark pass.

Same rows, same run. Generated churn rows (prescore.datagen, with its defects) are written once as
Parquet under bench/.data/, read, spread over the cores and cached; every subject works on that
cached frame, in seconds, best of 3 after a warm-up; each subject's note says how many Spark jobs
one call of it launches:

- baseline: one aggregation computing the row count and the null count of every column;
- prescore validate: the batch profile (two passes of two aggregations each), the shipped
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
from prescore import tables
from prescore.config import load_usecase
from prescore.datagen import churn_chunks
from prescore.profile import ProfilePlan, compute_profile
from prescore.spark import get_spark
from prescore.stages.clean import REASON, flag_duplicates, flag_invalid_rows
from prescore.stages.validate import load_suite, validate_frame

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


def subjects(
    frame: DataFrame, usecase: UseCase, suite: ExpectationSuite
) -> dict[str, Callable[[], object]]:
    plan = ProfilePlan.for_usecase(usecase, frame.columns)
    profile = lambda: compute_profile(frame, plan=plan)  # noqa: E731
    expectations = lambda: validate_frame(frame, suite)  # noqa: E731
    rules = row_rules(frame, usecase)

    def whole() -> None:
        profile()
        expectations()
        rules()

    return {
        BASELINE: null_counts(frame),
        VALIDATE: whole,
        "profile (2 passes)": profile,
        "GE suite (SUMMARY)": expectations,
        "row rules (quarantine)": rules,
    }


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


def jobs_per_call(spark: SparkSession, groups: list[str], calls: int) -> dict[str, float]:
    """Spark jobs each subject launched per call (a job group per subject, `calls` calls each)."""
    tracker = spark.sparkContext.statusTracker()
    return {g: len(tracker.getJobIdsForGroup(g)) / calls for g in groups}


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
        named = subjects(frame, usecase, suite)
        groups = [f"bench-validate-{i}" for i in range(len(named))]
        tagged = {
            name: in_job_group(spark, group, action)
            for (name, action), group in zip(named.items(), groups, strict=True)
        }
        try:
            seconds = best_times(tagged, repeats=REPEATS, warmups=WARMUPS)
            jobs = dict(
                zip(named, jobs_per_call(spark, groups, REPEATS + WARMUPS).values(), strict=True)
            )
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
            f"{jobs[name]:g} Spark jobs per call",
        )
        for name, value in seconds.items()
    ]
