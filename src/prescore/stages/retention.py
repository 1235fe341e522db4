"""Retention: raw_<entity> and quarantine_<entity> keep `retention_days` of run dates.

The two tables that hold source rows (raw with its PII in the clear) lose every run_date
partition older than the run date minus `retention_days`: deleted in one commit each, then
vacuumed, so the rows are gone from the latest version and from disk (no vacuum when no commit
since the last one removed a file: tables.removed_since_vacuum). Time comes from the run date,
never from the clock: rerunning a date deletes the same partitions, and a backfill of an earlier
date deletes nothing a later date kept. Clean, predictions and the rest keep their history.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from prescore.platform import tables

if TYPE_CHECKING:
    from prescore.context import RunContext

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict[str, object]:
    """Delete and vacuum the expired run dates of raw_<entity> and quarantine_<entity>."""
    usecase = ctx.usecase
    cutoff = ctx.run_date - timedelta(days=usecase.retention_days)
    deleted = {
        table: tables.delete_runs_before(ctx.spark, ctx.settings, table, cutoff)
        for table in (usecase.raw_table, usecase.quarantine_table)
    }
    summary: dict[str, object] = {
        "usecase": usecase.name,
        "run_date": ctx.run_date.isoformat(),
        "retention_days": usecase.retention_days,
        "deleted_before": cutoff.isoformat(),
        "tables": deleted,
    }
    log.info("retention: %s", summary)
    return summary
