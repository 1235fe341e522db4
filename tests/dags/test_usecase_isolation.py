"""One bad use-case file costs only its own DAGs, and Airflow reports it as an import error.

A real DagBag parses dags/ against a copy of conf/ holding one more, broken, use-case file: the
other use cases' DAGs load, and the broken file shows among the DagBag's import errors (what the
DAG processor stores for the UI and `airflow dags list-import-errors`), naming the file, the
field and the reason.
"""

from __future__ import annotations

import shutil
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
