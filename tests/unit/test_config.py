"""Configuration loads strictly: a bad file fails at load naming the file, the field and the reason."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from prescore.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    load_settings,
    load_usecase,
    load_usecases,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_shipped_configuration_loads(conf_dir: Path) -> None:
    settings = load_settings(conf_dir)
    usecase = load_usecase("churn", settings)
    assert usecase.keys == ["customer_id"]
    assert usecase.predictions_table == "pred_churn"
    assert settings.tracking_uri.startswith("sqlite:///")


def test_unknown_key_names_file_and_field(conf_dir: Path) -> None:
    _edit(conf_dir / "usecases" / "churn.yaml", "task: binary", "task: binary\nleabel: oops")
    with pytest.raises(ConfigError, match=r"churn\.yaml: leabel: Extra inputs are not permitted"):
        load_usecase("churn", load_settings(conf_dir))


def test_wrong_type_names_nested_field(conf_dir: Path) -> None:
    _edit(conf_dir / "usecases" / "churn.yaml", "ttl_days: 7", "ttl_days: soon")
    with pytest.raises(ConfigError, match=r"churn\.yaml: score\.ttl_days: .*integer"):
        load_usecase("churn", load_settings(conf_dir))


def test_undeclared_column_is_refused(conf_dir: Path) -> None:
    _edit(conf_dir / "usecases" / "churn.yaml", "label: churned", "label: cancelled")
    with pytest.raises(ConfigError, match=r"\['cancelled'\] are used but not declared"):
        load_usecase("churn", load_settings(conf_dir))


def test_split_must_sum_to_one(conf_dir: Path) -> None:
    _edit(conf_dir / "usecases" / "churn.yaml", "test: 0.15, seed", "test: 0.25, seed")
    with pytest.raises(ConfigError, match=r"must be 1\.0"):
        load_usecase("churn", load_settings(conf_dir))


def test_malformed_yaml_names_file(conf_dir: Path) -> None:
    (conf_dir / "base.yaml").write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: not valid YAML"):
        load_settings(conf_dir)


def test_unknown_usecase_lists_known_ones(conf_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"no use case named 'fraud' \(known: churn"):
        load_usecase("fraud", load_settings(conf_dir))


def test_environment_overlay_and_variables(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESCORE_SPARK_MASTER", "spark://127.0.0.1:7077")
    monkeypatch.setenv("PRESCORE_STATE_DIR", "/tmp/prescore-elsewhere")
    assert load_settings(conf_dir).spark.master == "spark://127.0.0.1:7077"
    overlaid = load_settings(conf_dir, env="test")
    assert overlaid.spark.master == "local[2]"
    assert overlaid.state_dir == Path("/tmp/prescore-elsewhere")


def test_missing_required_variable_is_named(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRESCORE_STATE_DIR", raising=False)
    monkeypatch.setenv("PRESCORE_SPARK_MASTER", "local[1]")
    with pytest.raises(
        ConfigError, match=r"cluster\.yaml: environment variable PRESCORE_STATE_DIR is not set"
    ):
        load_settings(conf_dir, env="cluster")


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("pii:\n  name: {method: generalise}\n", "exactly one of band"),
        ("pii:\n  name: {method: hash, keep: 3}\n", "only applies to method generalise"),
        ("pii:\n  name: {method: generalise, band: 10}\n", "band needs an int or long"),
        ("cleaning:\n  impute:\n    plan: {strategy: constant}\n", "value is required"),
        (
            "cleaning:\n  impute:\n    nope: {strategy: mean}\n",
            "['nope'] are used but not declared",
        ),
        ("cleaning:\n  drop_columns: [tenure_months]\n", "drop_columns ['tenure_months']"),
        (
            "cleaning:\n  outliers:\n    tenure_months: {method: mad}\n",
            "cleaning.outliers.tenure_months.method",
        ),
    ],
    ids=[
        "generalise_how",
        "keep_on_hash",
        "band_on_text",
        "constant_value",
        "undeclared",
        "drop_feature",
        "method",
    ],
)
def test_cleaning_and_pii_rules_are_checked_at_load(
    conf_dir: Path, block: str, reason: str
) -> None:
    import yaml

    path = conf_dir / "usecases" / "churn.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in yaml.safe_load(block).items():
        data[key] = {**data[key], **value}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        load_usecase("churn", load_settings(conf_dir))
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------- identity and column names


def test_name_must_equal_the_file_name(conf_dir: Path) -> None:
    usecases = conf_dir / "usecases"
    text = (usecases / "churn.yaml").read_text().replace("entity: customers", "entity: others")
    (usecases / "churn_copy.yaml").write_text(text)  # still says name: churn
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"{usecases / 'churn_copy.yaml'}: name: 'churn' differs from the file name 'churn_copy'"
        ),
    ):
        load_usecase("churn_copy", load_settings(conf_dir))


@pytest.mark.parametrize("stem", ["Churn2", "churn-2", "2churn", "a" * 41])
def test_a_file_not_named_as_a_usecase_is_reported(conf_dir: Path, stem: str) -> None:
    usecases = conf_dir / "usecases"
    text = (usecases / "churn.yaml").read_text().replace("entity: customers", "entity: others")
    (usecases / f"{stem}.yaml").write_text(text.replace("name: churn", f"name: {stem}"))
    loaded = load_usecases(load_settings(conf_dir))
    assert sorted(loaded.usecases) == ["churn", "forecast"]
    [(path, error)] = loaded.errors.items()
    assert path.name == f"{stem}.yaml"
    assert f"{path}: the file name is not a use-case name: {stem!r}" in str(error)


@pytest.mark.parametrize(
    ("usecase", "edit", "field", "value"),
    [
        ("churn", {"keys": ["customer id"]}, "keys.0", "customer id"),
        ("churn", {"label": 'churned"'}, "label", 'churned"'),
        ("churn", {"event_time": "updated_at; --"}, "event_time", "updated_at; --"),
        ("churn", {"numeric_features": ["tenure_months", "1x"]}, "numeric_features.1", "1x"),
        ("churn", {"categorical_features": {"plän": ["a"]}}, "categorical_features.plän", "plän"),
        ("churn", {"pii": {"e mail": {"method": "drop"}}}, "pii.e mail", "e mail"),
        (
            "churn",
            {"source": {"schema": {'x" , (select 42) as "y': "int"}}},
            "source.schema",
            'x" , (select 42) as "y',
        ),
        ("churn", {"cleaning": {"fill": {"a-b": 0}}}, "cleaning.fill.a-b", "a-b"),
        ("churn", {"cleaning": {"drop_columns": ["x.y"]}}, "cleaning.drop_columns.0", "x.y"),
        ("forecast", {"time_series": {"date_column": "da te"}}, "time_series.date_column", "da te"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_column_names_must_be_safe_identifiers(
    conf_dir: Path, usecase: str, edit: dict[str, Any], field: str, value: str
) -> None:
    """Refused at load, naming the file, the field and the value."""
    path = conf_dir / "usecases" / f"{usecase}.yaml"
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(_merged(data, edit), allow_unicode=True))
    with pytest.raises(ConfigError) as caught:
        load_usecase(usecase, load_settings(conf_dir))
    message = str(caught.value)
    assert message.startswith(f"{path}: {field}")
    assert f"{value!r} is not a safe column name" in message


def _merged(data: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    merged = dict(data)
    for key, new in edit.items():
        old = merged.get(key)
        merged[key] = _merged(old, new) if isinstance(new, dict) and isinstance(old, dict) else new
    return merged


@pytest.mark.parametrize("suite", ["../../etc/passwd", "/abs/suite", "sub/suite", ".hidden"])
def test_expectation_suite_is_a_file_name_never_a_path(conf_dir: Path, suite: str) -> None:
    path = conf_dir / "usecases" / "churn.yaml"
    _edit(path, "expectations: raw_customers", f"expectations: {suite}")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}: expectations: String should"):
        load_usecase("churn", load_settings(conf_dir))
