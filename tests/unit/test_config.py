"""Configuration loads strictly: a bad file fails at load naming the file, the field and the reason."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from prescore.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    Settings,
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


# ---------------------------------------------------------------- the use case as a whole


def _rewrite(path: Path, edit: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
    data = _merged(yaml.safe_load(path.read_text()), edit)
    for key in drop:
        del data[key]
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            {"keys": ["customer_id", "tenure_months"]},
            "keys and numeric_features both name ['tenure_months']",
        ),
        ({"keys": ["plan"]}, "keys and categorical_features both name ['plan']"),
        ({"keys": ["churned"]}, "keys and label both name ['churned']"),
        (
            {"numeric_features": ["tenure_months", "churned"]},
            "label and numeric_features both name ['churned']",
        ),
        (
            {"numeric_features": ["tenure_months"], "categorical_features": {"tenure_months": []}},
            "numeric_features and categorical_features both name ['tenure_months']",
        ),
        ({"keys": ["customer_id", "customer_id"]}, "keys: ['customer_id'] listed more than once"),
    ],
    ids=[
        "key_numeric",
        "key_categorical",
        "key_label",
        "label_feature",
        "feature_twice",
        "key_twice",
    ],
)
def test_a_column_plays_one_role(conf_dir: Path, edit: dict[str, Any], reason: str) -> None:
    """Issue 18, point 1: a key that is also a feature was accepted, and scoring died minutes
    later with AMBIGUOUS_REFERENCE; now it is refused at load, naming the fields."""
    path = conf_dir / "usecases" / "churn.yaml"
    _rewrite(path, edit)
    with pytest.raises(ConfigError) as caught:
        load_usecase("churn", load_settings(conf_dir))
    assert str(caught.value).startswith(f"{path}: {reason}")


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            {"source": {"schema": {"updated_at": "string"}}},
            "event_time: updated_at (string) must be date or timestamp",
        ),
        (
            {"source": {"schema": {"churned": "string"}}},
            "label: churned (string) must be int, long or boolean (task binary)",
        ),
        (
            {"source": {"schema": {"churned": "double"}}},
            "label: churned (double) must be int, long or boolean",
        ),
        (
            {"task": "regression", "model": {"promotion": {"metric": "rmse", "minimum": None}}},
            None,  # an int label fits a regression too
        ),
        (
            {"source": {"schema": {"churned": "boolean"}}},
            None,  # a boolean label fits a binary task
        ),
        (
            {"source": {"schema": {"support_calls": "string"}}},
            "numeric_features: support_calls (string) must be int, long, double or boolean",
        ),
        (
            {"source": {"schema": {"plan": "int"}}},
            "categorical_features: plan (int) must be string",
        ),
        (
            {"source": {"schema": {"monthly_charges": "string"}}},
            "numeric_features: monthly_charges (string)",
        ),
        (
            {"cleaning": {"clip": {"signup_date": {"min": 0}}}},
            "cleaning.clip: signup_date (date) must be int, long or double",
        ),
        (
            {"cleaning": {"impute": {"region": {"strategy": "median"}}}},
            "cleaning.impute: region (string) must be int, long or double",
        ),
        ({"cleaning": {"impute": {"region": {"strategy": "mode"}}}}, None),
        (
            {"source": {"schema": {"customer_id": "timestamp"}}},
            "keys: customer_id (timestamp) must be string, int, long or date",
        ),
    ],
    ids=[
        "event_time_text",
        "label_text",
        "binary_label_double",
        "regression_int_label",
        "binary_label_boolean",
        "numeric_text",
        "categorical_int",
        "clipped_text",
        "clip_date",
        "median_of_text",
        "mode_of_text",
        "timestamp_key",
    ],
)
def test_types_fit_their_roles(conf_dir: Path, edit: dict[str, Any], reason: str | None) -> None:
    """Issue 18, point 7: a text event_time ("Mar-2018") was accepted; each role now checks the
    declared type at load."""
    path = conf_dir / "usecases" / "churn.yaml"
    _rewrite(path, edit)
    settings = load_settings(conf_dir)
    if reason is None:
        load_usecase("churn", settings)
        return
    with pytest.raises(ConfigError) as caught:
        load_usecase("churn", settings)
    assert str(caught.value).startswith(f"{path}: {reason}")


def test_event_time_is_optional(conf_dir: Path) -> None:
    """Issue 18, point 7: a use case whose keys are unique needs no event_time."""
    _rewrite(conf_dir / "usecases" / "churn.yaml", {}, drop=("event_time",))
    usecase = load_usecase("churn", load_settings(conf_dir))
    assert usecase.event_time is None
    assert usecase.split_time_column is None  # split by key: no time needed


def test_a_time_series_without_event_time_splits_on_its_date_column(conf_dir: Path) -> None:
    _rewrite(conf_dir / "usecases" / "forecast.yaml", {}, drop=("event_time",))
    usecase = load_usecase("forecast", load_settings(conf_dir))
    assert usecase.event_time is None
    assert usecase.split_time_column == "date"


def test_split_by_time_needs_a_time_column(conf_dir: Path) -> None:
    path = conf_dir / "usecases" / "churn.yaml"
    _rewrite(path, {"split": {"by": "time", "test_days": 7}}, drop=("event_time",))
    with pytest.raises(ConfigError) as caught:
        load_usecase("churn", load_settings(conf_dir))
    assert str(caught.value).startswith(f"{path}: split: by time reads each row's day from")


# ---------------------------------------------------------------- the expectation suite


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    target = tmp_path / "expectations"
    shutil.copytree(DEFAULT_CONF_DIR.parent / "expectations", target)
    return target


def _with_suites(conf_dir: Path, suites: Path) -> Settings:
    return load_settings(conf_dir).model_copy(update={"expectations_dir": suites})


def _add_expectation(suite: Path, expectation: dict[str, Any]) -> int:
    data = json.loads(suite.read_text())
    data["expectations"].append(expectation)
    suite.write_text(json.dumps(data))
    return len(data["expectations"]) - 1


@pytest.mark.parametrize("severity", ["warning", "info", "critical", None])
def test_every_expectation_column_is_declared_whatever_its_severity(
    conf_dir: Path, suites: Path, severity: str | None
) -> None:
    """Issue 18, point 8: a mistyped column in a `warning` expectation passed with exit 0."""
    expectation: dict[str, Any] = {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "tenure_monhts", "min_value": 0},
    }
    if severity:
        expectation["severity"] = severity
    index = _add_expectation(suites / "raw_customers.json", expectation)
    with pytest.raises(ConfigError) as caught:
        load_usecase("churn", _with_suites(conf_dir, suites))
    assert str(caught.value) == (
        f"{conf_dir / 'usecases' / 'churn.yaml'}: expectations: {suites / 'raw_customers.json'}: "
        f"expectation #{index} (expect_column_values_to_be_between, severity "
        f"{severity or 'critical'}): columns ['tenure_monhts'] are not declared in source.schema"
    )


@pytest.mark.parametrize(
    ("kwargs", "unknown"),
    [
        ({"column_A": "plan", "column_B": "regoin"}, ["regoin"]),
        ({"column_list": ["customer_id", "run_date", "nope"]}, ["nope"]),
        ({"column_set": ["customer_id", "_source_file", "x"], "exact_match": False}, ["x"]),
    ],
    ids=["pair", "list", "set"],
)
def test_multi_column_expectations_name_declared_columns(
    conf_dir: Path, suites: Path, kwargs: dict[str, Any], unknown: list[str]
) -> None:
    """Lineage columns that ingest adds (run_date, _source_file, _ingested_at) may be checked."""
    _add_expectation(
        suites / "raw_customers.json",
        {"type": "expect_it", "kwargs": kwargs, "severity": "warning"},
    )
    with pytest.raises(ConfigError, match=re.escape(f"columns {unknown} are not declared")):
        load_usecase("churn", _with_suites(conf_dir, suites))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "expectation suite not found"),
        ('{"name": "raw_customers", "expectations": [', "not valid JSON"),
        ('{"name": "raw_customers", "expectations": []}', "'expectations' must be a non-empty"),
        ('{"name": "raw_customers", "expectations": [7]}', "expectation #0: expected an object"),
    ],
    ids=["missing", "bad_json", "empty", "not_an_object"],
)
def test_a_bad_suite_file_is_a_config_error_naming_both_files(
    conf_dir: Path, suites: Path, content: str | None, reason: str
) -> None:
    suite = suites / "raw_customers.json"
    if content is None:
        suite.unlink()
    else:
        suite.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_usecase("churn", _with_suites(conf_dir, suites))
    path = conf_dir / "usecases" / "churn.yaml"
    assert str(caught.value).startswith(f"{path}: expectations: {suite}: {reason}")


def test_load_usecases_reports_a_bad_suite_for_its_file_only(conf_dir: Path, suites: Path) -> None:
    _add_expectation(
        suites / "raw_sales.json",
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "slaes"}},
    )
    loaded = load_usecases(_with_suites(conf_dir, suites))
    assert list(loaded.usecases) == ["churn"]
    [(path, error)] = loaded.errors.items()
    assert path == conf_dir / "usecases" / "forecast.yaml"
    assert "columns ['slaes'] are not declared in source.schema" in str(error)
