"""Derived columns (`derive:`): checked at load without Spark, computed in clean with Spark."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from prescore.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    DerivedColumn,
    UseCase,
    load_settings,
    load_usecase,
)
from prescore.data.cleaning import add_derived_columns, clean_columns, clean_rows
from prescore.expressions import ExpressionError, referenced_columns

pytestmark = pytest.mark.unit

LATE = "CASE WHEN dep_delay IS NULL THEN NULL ELSE dep_delay >= 15 END"


@pytest.fixture
def churn_yaml(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of conf/ and the churn use case's YAML as a dict, to edit and write back."""
    shutil.copytree(DEFAULT_CONF_DIR, tmp_path / "conf")
    path = tmp_path / "conf" / "usecases" / "churn.yaml"
    return path, yaml.safe_load(path.read_text())


def _load(path: Path, data: dict[str, Any]) -> UseCase:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_usecase("churn", load_settings(path.parents[1]))


# ---------------------------------------------------------------- the expression check, no Spark


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        (LATE, {"dep_delay"}),
        ("coalesce(a, 0) * 2 + int(b)", {"a", "b"}),
        ("if(x in (1, 2) and not (y > 1), upper(s), lower(s))", {"x", "y", "s"}),
        ("datediff(d, to_date('2020-01-01')) + extract(year from d)", {"d"}),
        ("cast(a as decimal(10, 2))", {"a"}),
        ("`user` || 'x'", {"user"}),
    ],
)
def test_allowed_expressions_name_the_columns_they_read(sql: str, columns: set[str]) -> None:
    assert referenced_columns(sql) == columns


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("reflect('java.util.UUID', 'randomUUID')", "function reflect() is not on the allow-list"),
        ("`java_method`('a', 'b')", "function java_method() is not on the allow-list"),
        ("input_file_name()", "function input_file_name() is not on the allow-list"),
        ("read_files('/etc/passwd')", "function read_files() is not on the allow-list"),
        ("my_udf(a)", "function my_udf() is not on the allow-list"),
        ("rand() > 0.5", "function rand() is not on the allow-list"),
        ("sum(a) over ()", "function sum() is not on the allow-list"),
        ("current_user()", "current_user reads the session or the clock"),
        ("current_date", "current_date reads the session or the clock"),
        ("a + (select 1)", "subquery not allowed"),
        ("x in (select y from t)", "subquery not allowed"),
        ("t.a + 1", "t.a: name a column without a table"),
        ("a as b", "alias not allowed"),
        ("a; drop table t", "exactly one expression"),
        ("a +", "does not parse as Spark SQL"),
        ("*", "star not allowed"),
    ],
)
def test_refused_expressions_say_why(sql: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(reason)):
        referenced_columns(sql)


# ---------------------------------------------------------------- the use case, at load


def test_a_derived_label_and_feature_load(churn_yaml: tuple[Path, dict[str, Any]]) -> None:
    path, data = churn_yaml
    data["derive"] = {
        "long_tenure": {"sql": "tenure_months >= 24", "type": "int"},
        "charges_per_month": {
            "sql": "total_charges / greatest(tenure_months, 1)",
            "type": "double",
        },
    }
    data["label"] = "long_tenure"
    data["numeric_features"] = [*data["numeric_features"], "charges_per_month"]
    data["cleaning"]["fill"] = {**data["cleaning"].get("fill", {}), "charges_per_month": 0.0}
    usecase = _load(path, data)
    assert usecase.derive["long_tenure"] == DerivedColumn(sql="tenure_months >= 24", type="int")
    assert list(usecase.column_types)[-2:] == ["long_tenure", "charges_per_month"]
    assert clean_columns(usecase)[-2:] == ["long_tenure", "charges_per_month"]


@pytest.mark.parametrize(
    ("derive", "reason"),
    [
        (
            {"late": {"sql": "reflect('a', 'b')", "type": "int"}},
            "derive.late.sql: function reflect()",
        ),
        (
            {"late": {"sql": "nope >= 15", "type": "int"}},
            "derive.late: reads ['nope'], not declared",
        ),
        ({"plan": {"sql": "upper(region)", "type": "string"}}, "derive.plan: the name is a source"),
        ({"split": {"sql": "region", "type": "string"}}, "derive.split: the name is one prescore"),
        (
            {"dom": {"sql": "substring(email, 3)", "type": "string"}},
            "derive.dom: reads PII columns",
        ),
        ({"late": {"sql": "tenure_months > 1", "type": "bool"}}, "derive.late.type"),
        ({"late": "tenure_months > 1"}, "derive.late: Input should be"),
    ],
    ids=["function", "undeclared", "clash", "reserved", "pii", "type", "shape"],
)
def test_a_bad_derived_column_is_named_at_load(
    churn_yaml: tuple[Path, dict[str, Any]], derive: dict[str, Any], reason: str
) -> None:
    path, data = churn_yaml
    data["derive"] = derive
    with pytest.raises(ConfigError, match=re.escape(reason)) as caught:
        _load(path, data)
    assert str(path) in str(caught.value)


def test_a_label_not_declared_nor_derived_is_refused(
    churn_yaml: tuple[Path, dict[str, Any]],
) -> None:
    path, data = churn_yaml
    data["label"] = "late"
    with pytest.raises(ConfigError, match=re.escape("['late'] are used but not declared")):
        _load(path, data)


# ---------------------------------------------------------------- computed in clean, with Spark


def test_derived_columns_are_computed_and_cast(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("a", 20.0, "x"), ("b", 3.0, "y"), ("c", None, None)],
        "id string, dep_delay double, code string",
    )
    derive = {
        "late": DerivedColumn(sql=LATE, type="int"),
        "code_upper": DerivedColumn(sql="upper(code)", type="string"),
        "delay_minutes": DerivedColumn(sql="dep_delay * 1", type="long"),
    }
    expected = spark.createDataFrame(
        [
            ("a", 20.0, "x", 1, "X", 20),
            ("b", 3.0, "y", 0, "Y", 3),
            ("c", None, None, None, None, None),
        ],
        "id string, dep_delay double, code string, late int, code_upper string, delay_minutes long",
    )
    assert_df_equality(add_derived_columns(df, derive=derive), expected, ignore_row_order=True)


def test_clean_rows_keep_the_derived_columns(spark: SparkSession, churn: UseCase) -> None:
    usecase = churn.model_copy(
        update={
            "derive": {"long_tenure": DerivedColumn(sql="tenure_months >= 24", type="int")},
            "label": "long_tenure",
        }
    )
    columns = ", ".join(f"{c} {t}" for c, t in usecase.source.schema_.items())
    raw = spark.createDataFrame([], f"{columns}, run_date date")
    clean = clean_rows(
        add_derived_columns(raw, derive=usecase.derive), usecase=usecase, secret=b"s"
    )
    assert clean.schema["long_tenure"].dataType.simpleString() == "int"


def test_check_lists_the_derived_columns(churn_yaml: tuple[Path, dict[str, Any]]) -> None:
    from prescore.cli import usecase_summary

    path, data = churn_yaml
    data["derive"] = {"long_tenure": {"sql": "tenure_months >= 24", "type": "int"}}
    usecase = _load(path, data)
    lines = usecase_summary(usecase, load_settings(path.parents[1]))
    assert "  derive      long_tenure (int) = tenure_months >= 24" in lines


def test_a_suite_naming_a_derived_column_is_told_it_checks_raw(
    churn_yaml: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import json

    path, data = churn_yaml
    suites = tmp_path / "expectations"
    shutil.copytree(DEFAULT_CONF_DIR.parent / "expectations", suites)
    suite = suites / "raw_customers.json"
    spec = json.loads(suite.read_text())
    spec["expectations"].append(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "long_tenure"}}
    )
    suite.write_text(json.dumps(spec))
    data["derive"] = {"long_tenure": {"sql": "tenure_months >= 24", "type": "int"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = load_settings(path.parents[1]).model_copy(update={"expectations_dir": suites})
    with pytest.raises(ConfigError, match=re.escape("derive: columns exist in clean only")):
        load_usecase("churn", settings)
