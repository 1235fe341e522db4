"""Clean stage: raw -> clean_<entity> + quarantine_<entity> + cleaning_stats_<entity>.

Read the raw run date, add the derived columns (`derive:`), flag it with the row rules and the
split (data.cleaning), fit the cleaning rules on the train split (the bounds that quarantine, and
the day's fill values and bounds, recorded), then write the quarantined rows (with their reason),
the fitted values and the clean rows, anonymised, with their missing values: clean + quarantined
= raw for the run_date. Fills, clips and category codes are the model's (training.package).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from prescore.data.cleaning import (
    DUPLICATE_REASON,
    REASON,
    SPLIT,
    QuarantineLimitError,
    add_derived_columns,
    assign_split,
    clean_rows,
    fit_on_train,
    fitted_frame,
    flag_duplicates,
    flag_fitted_rules,
    flag_invalid_rows,
    quarantine_rows,
    refuse_duplicate_keys,
)
from prescore.platform import tables

if TYPE_CHECKING:
    from prescore.context import RunContext

log = logging.getLogger(__name__)
SECRET_ENV = "PRESCORE_HMAC_KEY"


def hmac_secret() -> bytes:
    """The PII hashing key, from the environment only."""
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise RuntimeError(
            f"{SECRET_ENV} is not set: PII hashing needs a secret key from the environment"
        )
    return secret.encode()


def run(ctx: RunContext) -> dict[str, object]:
    """Raw run_date -> quarantine_<entity> (rows failing a rule, with the reason), the fitted
    statistics in cleaning_stats_<entity>, and clean_<entity> (the rest, cleaned)."""
    usecase, settings = ctx.usecase, ctx.settings
    cleaning = usecase.cleaning
    secret = hmac_secret()
    raw_version = tables.latest_version(settings, usecase.raw_table)
    raw = tables.read_run(ctx.spark, settings, usecase.raw_table, ctx.run_date, raw_version)
    rows = raw.transform(add_derived_columns, derive=usecase.derive).transform(
        flag_invalid_rows,
        keys=usecase.row_keys,
        valid_range=cleaning.valid_range,
        pii=usecase.pii,
        declared=usecase.source.schema_,
    )
    if usecase.event_time is not None:  # the latest row of a key is kept, older ones quarantined
        rows = rows.transform(flag_duplicates, keys=usecase.row_keys, event_time=usecase.event_time)
    flagged = rows.transform(
        assign_split,
        keys=usecase.keys,
        split=usecase.split,
        event_time=usecase.split_time_column,
        run_date=ctx.run_date,
    ).cache()
    try:
        if usecase.event_time is None:  # no latest row to keep: refused before anything is written
            refuse_duplicate_keys(
                flagged, keys=usecase.row_keys, table=usecase.raw_table, run_date=ctx.run_date
            )
        fitted = fit_on_train(flagged, cleaning=cleaning)
        final = flagged.transform(
            flag_fitted_rules,
            impute=cleaning.impute,
            outliers=cleaning.outliers,
            bounds=fitted.bounds,
            pii=usecase.pii,
        )
        counts = {row[0]: row[1] for row in final.groupBy(REASON).count().collect()}
        total = sum(counts.values())
        invalid = sum(n for reason, n in counts.items() if reason not in (None, DUPLICATE_REASON))
        quarantined = quarantine_rows(  # the raw row as it came: derived columns recomputed
            final.where(f"{REASON} is not null").drop(SPLIT, *usecase.derive),
            pii=usecase.pii,
            secret=secret,
        )
        versions = tables.replace_runs(
            {
                usecase.cleaning_stats_table: fitted_frame(
                    ctx.spark, fitted, cleaning, run_date=ctx.run_date
                ),
                usecase.quarantine_table: quarantined,
            },
            settings,
            ctx.run_date,
        )
        stats_version = versions[usecase.cleaning_stats_table]
        quarantine_version = versions[usecase.quarantine_table]
        limit = cleaning.max_quarantined_fraction
        if total and invalid / total > limit:
            raise QuarantineLimitError(
                f"{usecase.raw_table} run_date {ctx.run_date}: {invalid} of {total} rows "
                f"({invalid / total:.1%}) failed row rules, over the limit of {limit:.1%}; "
                f"see {usecase.quarantine_table}"
            )
        clean = clean_rows(
            final.where(f"{REASON} is null"), usecase=usecase, secret=secret, run_date=ctx.run_date
        )
        clean_version = tables.replace_run(clean, settings, usecase.clean_table, ctx.run_date)
    finally:
        flagged.unpersist()
    summary = {
        "raw_rows": total,
        "clean_rows": counts.get(None, 0),
        "quarantined_invalid": invalid,
        "quarantined_duplicates": counts.get(DUPLICATE_REASON, 0),
        "raw_version": raw_version,
        "clean_version": clean_version,
        "quarantine_version": quarantine_version,
        "stats_version": stats_version,
        "read": {usecase.raw_table: raw_version},
        "wrote": {
            usecase.clean_table: clean_version,
            usecase.quarantine_table: quarantine_version,
            usecase.cleaning_stats_table: stats_version,
        },
    }
    log.info("clean: %s", summary)
    return summary
