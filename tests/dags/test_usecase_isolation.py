"""One bad use-case file costs only its own DAGs, and Airflow reports it as an import error.

A real DagBag parses dags/ against a copy of conf/ holding one more, broken, use-case file: the
other use cases' DAGs load, and the broken file shows among the DagBag's import errors (what the
DAG processor stores for the UI and `airflow dags list-import-errors`), naming the file, the
field and the reason. The last test runs the real DAG processing into Airflow's database and
reads back what `airflow dags list-import-errors` prints.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from prescore.config import DEFAULT_CONF_DIR

pytestmark = [pytest.mark.dag, pytest.mark.reliability]

CHURN_DAGS = {"prescore_churn_score", "prescore_churn_train"}
FORECAST_DAGS = {"prescore_forecast_score", "prescore_forecast_train"}


@pytest.fixture
def conf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of conf/, which the DAG files read through PRESCORE_CONF_DIR."""
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    monkeypatch.setenv("PRESCORE_CONF_DIR", str(target))
    monkeypatch.delenv("PRESCORE_TASK_RETRIES", raising=False)
    yield target


def _add_usecase(conf_dir: Path, file: str, **changes: str) -> Path:
    """conf/usecases/<file>.yaml: churn's file with some top-level lines replaced."""
    text = (DEFAULT_CONF_DIR / "usecases" / "churn.yaml").read_text()
    for old, new in changes.items():
        assert f"\n{old}: " in text, old
        line = next(s for s in text.splitlines() if s.startswith(f"{old}: "))
        text = text.replace(line, f"{old}: {new}")
    path = conf_dir / "usecases" / f"{file}.yaml"
    path.write_text(text)
    return path


def _parse(dags_dir: Path) -> tuple[set[str], str]:
    """(the DAG ids, every import error's text) of the DAG folder, as the DAG processor sees it."""
    bag = DagBag(dag_folder=str(dags_dir))
    return set(bag.dags), "\n".join(f"{file}: {error}" for file, error in bag.import_errors.items())


def test_an_invalid_usecase_file_loses_only_its_own_dags(dags_dir: Path, conf_dir: Path) -> None:
    broken = _add_usecase(conf_dir, "x", name="x", entity="things", task="binari")
    dag_ids, errors = _parse(dags_dir)

    assert dag_ids == CHURN_DAGS | FORECAST_DAGS
    assert "prescore_config_check.py" in errors
    assert f"{broken}: task: Input should be 'binary' or 'regression'" in errors

    # Fixed, the file gets its DAGs and the import error clears.
    _add_usecase(conf_dir, "x", name="x", entity="things", task="binary")
    dag_ids, errors = _parse(dags_dir)
    assert dag_ids == CHURN_DAGS | FORECAST_DAGS | {"prescore_x_score", "prescore_x_train"}
    assert errors == ""


def test_a_yaml_error_and_a_bad_column_are_both_reported(dags_dir: Path, conf_dir: Path) -> None:
    (conf_dir / "usecases" / "a.yaml").write_text("name: a\nkeys: [unclosed\n")
    bad_column = _add_usecase(conf_dir, "x", name="x", entity="things", label='"churned)--"')
    dag_ids, errors = _parse(dags_dir)

    assert dag_ids == CHURN_DAGS | FORECAST_DAGS
    assert f"{conf_dir / 'usecases' / 'a.yaml'}: not valid YAML" in errors
    assert f"{bad_column}: label: 'churned)--' is not a safe column name" in errors


def test_usecases_sharing_an_entity_lose_their_dags_and_no_other(
    dags_dir: Path, conf_dir: Path
) -> None:
    """x writes churn's raw_customers: both are refused, naming each other; forecast runs on."""
    copy = _add_usecase(conf_dir, "x", name="x")
    churn = conf_dir / "usecases" / "churn.yaml"
    dag_ids, errors = _parse(dags_dir)

    assert dag_ids == FORECAST_DAGS
    assert f"{churn}: entity: 'customers' is also the entity of {copy}" in errors
    assert f"{copy}: entity: 'customers' is also the entity of {churn}" in errors


def test_a_file_named_otherwise_than_its_usecase_is_refused(dags_dir: Path, conf_dir: Path) -> None:
    renamed = _add_usecase(conf_dir, "churn_v2", entity="customers_v2")
    dag_ids, errors = _parse(dags_dir)

    assert dag_ids == CHURN_DAGS | FORECAST_DAGS
    assert f"{renamed}: name: 'churn' differs from the file name 'churn_v2'" in errors


@pytest.mark.slow
def test_airflow_lists_the_broken_file_and_keeps_scheduling_the_others(
    dags_dir: Path, conf_dir: Path, tmp_path: Path
) -> None:
    """What a data engineer sees: the metadata database after the real DAG parsing
    (`airflow dags reserialize`) lists the broken file in `airflow dags list-import-errors`, and
    the other use cases' DAGs are there, neither stale nor flagged with import errors."""
    broken = _add_usecase(conf_dir, "x", name="x", entity="things", task="binari")
    home = tmp_path / "airflow"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))

    def run(*args: str, status: int = 0) -> str:
        done = subprocess.run(
            [airflow, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == status, done.stderr[-2000:]
        return done.stdout

    run("db", "migrate")
    run("dags", "reserialize")
    # The command exits 1 when there are import errors, as a check in a deploy script would want.
    listed = run("dags", "list-import-errors", "-o", "json", status=1).splitlines()
    errors = json.loads(next(line for line in listed if line.startswith("[")))  # after log lines
    assert [e["filepath"] for e in errors] == ["prescore_config_check.py"]
    assert f"{broken}: task: Input should be 'binary' or 'regression'" in errors[0]["error"]
    with sqlite3.connect(home / "airflow.db") as db:
        dags = db.execute("select dag_id, is_stale, has_import_errors from dag").fetchall()
    assert sorted(dags) == [(dag_id, 0, 0) for dag_id in sorted(CHURN_DAGS | FORECAST_DAGS)]
