"""The flow benchmark's reading of Spark event logs and prescore's stage log lines."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from bench.bench_flow import (
    Window,
    event_log_files,
    first_job_in,
    in_process_windows,
    read_event_log,
    stage_bounds,
    utc_seconds,
)

pytestmark = pytest.mark.unit


def local(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_event_log_gives_the_app_name_and_its_job_submissions_in_seconds() -> None:
    lines = [
        json.dumps({"Event": "SparkListenerLogStart", "Spark Version": "4.0.0"}),
        json.dumps({"Event": "SparkListenerApplicationStart", "App Name": "prescore-churn-score"}),
        json.dumps({"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": 1_500}),
        json.dumps({"Event": "SparkListenerJobEnd", "Job ID": 1, "Completion Time": 1_900}),
        json.dumps({"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 1_250}),
    ]
    assert read_event_log(lines) == ("prescore-churn-score", [1.25, 1.5])


def test_a_rolling_event_log_is_read_in_the_order_of_its_parts(tmp_path: Path) -> None:
    rolling = tmp_path / "eventlog_v2_local-1"
    rolling.mkdir()
    for name in ("events_10_local-1", "events_2_local-1", "appstatus_local-1"):
        (rolling / name).touch()
    plain = tmp_path / "local-2"
    plain.touch()
    assert [p.name for p in event_log_files(rolling)] == ["events_2_local-1", "events_10_local-1"]
    assert event_log_files(plain) == [plain]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0.0, 10.0, 2.0), (2.5, 10.0, 3.0), (3.5, 10.0, None), (0.0, 1.0, None)],
)
def test_first_job_in_a_window(start: float, end: float, expected: float | None) -> None:
    assert first_job_in([3.0, 2.0], start, end) == expected


def test_stage_bounds_pair_each_stage_start_with_its_done_line() -> None:
    lines = [
        "2026-12-05 07:00:00,000 INFO prescore.flow: ingest: churn for run_date 2026-11-02",
        "2026-12-05 07:00:01,000 WARN py4j: ingest: churn for run_date 2026-11-02",  # not prescore's
        "2026-12-05 07:00:05,500 INFO prescore.flow: ingest: done in 5.5 s",
        "2026-12-05 07:00:05,600 INFO prescore.stages.score: score: 3 partitions",  # not a bound
        "2026-12-05 07:00:06,000 INFO prescore.flow: score: churn for run_date 2026-11-02",
        "2026-12-05 07:00:09,250 INFO prescore.flow: score: done in 3.2 s",
        "2026-12-05 07:00:10,000 INFO prescore.flow: publish: churn for run_date 2026-11-02",
    ]
    assert stage_bounds(lines) == {
        "ingest": (local("2026-12-05 07:00:00,000"), local("2026-12-05 07:00:05,500")),
        "score": (local("2026-12-05 07:00:06,000"), local("2026-12-05 07:00:09,250")),
    }


def test_in_process_windows_start_the_first_stage_with_the_process() -> None:
    bounds = {"score": (20.0, 30.0), "ingest": (8.0, 15.0)}
    windows = in_process_windows(bounds, [12.0, 21.5, 22.0], process_start=1.0)
    assert windows == {"ingest": Window(1.0, 15.0, 12.0), "score": Window(20.0, 30.0, 21.5)}
    assert (windows["ingest"].startup, windows["ingest"].work) == (11.0, 3.0)


def test_a_window_without_a_spark_job_is_all_start_up() -> None:
    window = Window(start=5.0, end=9.0, first_job=None)
    assert (window.startup, window.work) == (4.0, 0.0)


@pytest.mark.parametrize(
    "stamp", ["2026-12-05 07:00:00.250000", "2026-12-05 07:00:00.250000+00:00"]
)
def test_airflow_timestamps_are_utc(stamp: str) -> None:
    assert utc_seconds(stamp) == 1_796_454_000.25
