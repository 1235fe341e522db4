"""Every table, Delta schema, shared column, report path and MLflow experiment, named once.

The lowest layer: plain names of plain values (an entity, a use case name, a folder), so that
config, platform and every package above can spell a name only by calling this module. The
table layouts here are the ones on disk: changing a name or a schema is a migration.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

# ---------------------------------------------------------------- shared columns

RUN_DATE = "run_date"  # the logical date: every table is partitioned by it
SPLIT = "split"  # clean rows: train / validation / test
SCORE = "score"  # predictions: the model's output
REASONS = "reasons"  # predictions, with score.explain: the top features behind each score
TARGET_DATE = "target_date"  # the day a time-series prediction is for (training.timeseries)
HORIZON = "horizon"  # days from the run date to target_date
QUARANTINE_REASON = "_quarantine_reason"  # why a raw row is not in clean
SOURCE_FILE, INGESTED_AT = "_source_file", "_ingested_at"  # raw rows' lineage
# raw rows' lineage too: map of column -> the text that did not parse as its declared type (the
# column itself is null), null when every value parsed; clean quarantines such rows
BAD_VALUES = "_bad_values"
BAD_VALUES_TYPE = "map<string,string>"
CHAMPION_SCORE, CHALLENGER_SCORE = "champion_score", "challenger_score"  # shadow rows

# ---------------------------------------------------------------- tables

PUBLISH_LOG = "publish_log"


def raw_table(entity: str) -> str:
    return f"raw_{entity}"


def clean_table(entity: str) -> str:
    return f"clean_{entity}"


def quarantine_table(entity: str) -> str:
    return f"quarantine_{entity}"


def validation_table(entity: str) -> str:
    """One row per expectation and run_date (VALIDATION_SCHEMA)."""
    return f"validation_{entity}"


def profile_table(entity: str) -> str:
    """One row per column and run_date (PROFILE_SCHEMA)."""
    return f"profile_{entity}"


def cleaning_stats_table(entity: str) -> str:
    """The cleaning rules' values fitted on the train split, per run_date."""
    return f"cleaning_stats_{entity}"


def predictions_table(usecase: str) -> str:
    return f"pred_{usecase}"


def shadow_table(usecase: str) -> str:
    """Champion and challenger scores side by side, one row per key and run_date."""
    return f"shadow_{usecase}"


def monitoring_table(usecase: str) -> str:
    """One row per run_date, metric and feature (MONITORING_SCHEMA)."""
    return f"monitoring_{usecase}"


# ---------------------------------------------------------------- Delta schemas (DDL)
PROFILE_SCHEMA = (
    "run_date date, usecase string, column string, dtype string, role string, rows long, "
    "nulls long, null_rate double, distinct_approx long, min string, max string, mean double, "
    "stddev double, quantiles string, histogram string, top_values string, correlations string"
)
VALIDATION_SCHEMA = (
    "run_date date, usecase string, suite string, expectation_type string, column string, "
    "kwargs string, severity string, success boolean, unexpected_count long, "
    "unexpected_percent double, observed_value string"
)
CLEANING_STATS_SCHEMA = (
    "run_date date, column string, rule string, strategy string, value string, "
    "lower double, upper double, fitted_rows long"
)
PUBLISH_LOG_SCHEMA = (
    "usecase string, run_date date, action string, predictions_version bigint, model_name string, "
    "model_version string, snapshot string, checks string, published_at timestamp"
)
MONITORING_SCHEMA = (
    "usecase string, run_date date, metric string, feature string, value double, "
    "threshold double, breached boolean, reference_rows bigint, current_rows bigint, "
    "compared string, detail string, computed_at timestamp"
)


def columns_of(schema: str) -> list[str]:
    """The column names of a DDL schema string, in order."""
    return [field.split()[0] for field in schema.split(", ")]


# ---------------------------------------------------------------- reports (under reports_dir)


def data_report_path(reports_dir: Path, usecase: str, run_date: date) -> Path:
    """The validate stage's data report (profile and expectations)."""
    return reports_dir / usecase / f"data_{usecase}_{run_date.isoformat()}.html"


def data_docs_path(reports_dir: Path, usecase: str, run_date: date) -> Path:
    """Great Expectations' own Data Docs page of one validation."""
    return reports_dir / usecase / f"gx_{usecase}_{run_date}.html"


def monitoring_report_path(reports_dir: Path, usecase: str, run_date: date) -> Path:
    return reports_dir / usecase / f"monitoring_{usecase}_{run_date.isoformat()}.html"


# ---------------------------------------------------------------- MLflow names


def model_name(registry_prefix: str, usecase: str) -> str:
    """The registered model, and the training runs' experiment, of a use case."""
    return f"{registry_prefix}-{usecase}"


def data_experiment(registry_prefix: str, usecase: str) -> str:
    """The validate stage's runs: one per validated run_date."""
    return f"{model_name(registry_prefix, usecase)}-data"


def monitoring_experiment(registry_prefix: str, usecase: str) -> str:
    """The monitor stage's runs: one per monitored run_date."""
    return f"{model_name(registry_prefix, usecase)}-monitoring"
