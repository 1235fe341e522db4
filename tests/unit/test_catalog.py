"""The catalog's names are the tables and files on disk: a change here is a migration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from prescore import catalog
from prescore.config import Settings, UseCase

pytestmark = pytest.mark.unit


def test_a_use_case_names_its_tables_through_the_catalog(churn: UseCase) -> None:
    assert churn.entity == "customers"
    assert {
        "raw": churn.raw_table,
        "clean": churn.clean_table,
        "quarantine": churn.quarantine_table,
        "validation": churn.validation_table,
        "profile": churn.profile_table,
        "stats": churn.cleaning_stats_table,
        "predictions": churn.predictions_table,
        "shadow": churn.shadow_table,
        "monitoring": churn.monitoring_table,
    } == {
        "raw": "raw_customers",
        "clean": "clean_customers",
        "quarantine": "quarantine_customers",
        "validation": "validation_customers",
        "profile": "profile_customers",
        "stats": "cleaning_stats_customers",
        "predictions": "pred_churn",
        "shadow": "shadow_churn",
        "monitoring": "monitoring_churn",
    }


def test_reports_and_experiments_keep_their_names(settings: Settings) -> None:
    day, reports = date(2026, 11, 1), Path("/r")
    assert catalog.data_report_path(reports, "churn", day) == Path(
        "/r/churn/data_churn_2026-11-01.html"
    )
    assert catalog.data_docs_path(reports, "churn", day) == Path(
        "/r/churn/gx_churn_2026-11-01.html"
    )
    assert catalog.monitoring_report_path(reports, "churn", day) == Path(
        "/r/churn/monitoring_churn_2026-11-01.html"
    )
    prefix = settings.mlflow.registry_prefix
    assert catalog.data_experiment(prefix, "churn") == f"{prefix}-churn-data"
    assert catalog.monitoring_experiment(prefix, "churn") == f"{prefix}-churn-monitoring"


def test_the_publish_log_columns_are_its_schema_in_order() -> None:
    assert catalog.columns_of(catalog.PUBLISH_LOG_SCHEMA) == [
        "usecase",
        "run_date",
        "action",
        "predictions_version",
        "model_name",
        "model_version",
        "snapshot",
        "checks",
        "published_at",
    ]
