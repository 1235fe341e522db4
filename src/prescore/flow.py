"""The stages in order, and running one or all of them for a use case and run_date."""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prescore.context import RunContext

log = logging.getLogger(__name__)
STAGES = ("ingest", "validate", "clean", "train", "score", "publish", "monitor")


def run_stage(stage: str, ctx: RunContext, **options: object) -> dict[str, object]:
    """Run one stage's `run(ctx, **options)`; each stage is the module prescore.stages.<stage>."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    module = importlib.import_module(f"prescore.stages.{stage}")
    started = time.perf_counter()
    log.info("%s: %s for run_date %s", stage, ctx.usecase.name, ctx.run_date)
    summary: dict[str, object] = module.run(ctx, **options)
    log.info("%s: done in %.1f s", stage, time.perf_counter() - started)
    return summary


def run_flow(ctx: RunContext, stages: tuple[str, ...] = STAGES) -> dict[str, dict[str, object]]:
    """Every stage in order; the first failure stops the flow (nothing later runs)."""
    return {stage: run_stage(stage, ctx) for stage in stages}
