"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME, no example DAGs, dags/ as the DAG folder.

Airflow reads its configuration once, when it is first imported, so the environment is set here,
when pytest loads this file, before any test module of this folder imports airflow.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="prescore-airflow-"))
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
}
if "airflow.configuration" in sys.modules:
    raise RuntimeError("airflow was imported before tests/dags/conftest.py could set AIRFLOW_HOME")
os.environ.update(AIRFLOW_ENV)
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dags_dir() -> Path:
    return DAGS_DIR
