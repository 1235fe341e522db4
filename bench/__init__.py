"""prescore benchmarks: each `bench_<name>.py` measures prescore against a baseline in the same run.

A module exposes `run(size: str) -> list[Measurement]`; `python -m bench` runs them and writes
bench/results.json and bench/results.md. Generated data lives under bench/.data/ (gitignored).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prescore.config import Settings

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
SIZES = ("small", "full")
SPARK_DRIVER_MEMORY = "4g"  # room in the local driver for a cached million-row frame


def spark_settings() -> Settings:
    """conf/base.yaml + conf/env/test.yaml (local[2]), with SPARK_DRIVER_MEMORY for the driver."""
    from prescore.config import load_settings

    settings = load_settings(env="test")
    conf = {**settings.spark.conf, "spark.driver.memory": SPARK_DRIVER_MEMORY}
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"conf": conf})})


@dataclass(frozen=True)
class Measurement:
    """One figure for one subject; `ratio` compares it with `baseline`, a subject of the same benchmark.

    The harness fills `ratio` as value / baseline value when higher is better, and as baseline
    value / value when lower is better, so a ratio above 1 always means better than the baseline.
    """

    benchmark: str
    subject: str
    metric: str
    value: float
    unit: str
    higher_is_better: bool
    baseline: str | None = None
    ratio: float | None = None
    note: str = ""


def best_times(
    actions: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 3,
    warmups: int = 1,
    settle_seconds: float = 1.0,
) -> dict[str, float]:
    """Seconds taken by the fastest of `repeats` timed calls of each action, after `warmups` untimed.

    The actions take turns, round after round, so that a burst of other work on a shared machine
    slows every subject a little rather than one a lot; the fastest call is the least disturbed.
    Each timed call waits `settle_seconds` first: a Spark job leaves work behind (garbage
    collection, workers winding down) that would otherwise be billed to the next subject.
    """
    for _ in range(warmups):
        for action in actions.values():
            action()
    best = dict.fromkeys(actions, math.inf)
    for _ in range(repeats):
        for name, action in actions.items():
            time.sleep(settle_seconds)
            start = time.perf_counter()
            action()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
