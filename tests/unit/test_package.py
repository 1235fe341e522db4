"""The model package's preprocessing: one implementation, the same numbers from Arrow batches
(Spark), pandas rows (the pyfunc, computed scores) and a Spark frame; fitted on train rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from prescore.catalog import SPLIT
from prescore.config import CleaningSettings, ImputeRule, LearnedLevels, OutlierRule, RangeRule
from prescore.training.package import (
    FeatureStep,
    FeatureValueError,
    Preprocessing,
    fit_preprocessing,
    learned_levels,
    preprocessed,
    transformed,
)

NAN = float("nan")
STEPS = Preprocessing(
    [
        FeatureStep("calls", "numeric", integral=True, fill=2.6),  # an int: the fill is rounded
        FeatureStep("usage", "numeric", fill=7.25, clips=[(0.0, 100.0), (None, 50.0)]),
        FeatureStep("charge", "numeric", clips=[(0.0, None)]),
        FeatureStep("active", "numeric"),
        FeatureStep("plan", "categorical", fill="basic", levels=["basic", "standard", "premium"]),
        FeatureStep("region", "categorical", levels=["north", "south"]),
    ]
)
# Nulls, NaN, outliers on both sides, unseen levels, the bounds themselves, every dtype.
ROWS = pd.DataFrame(
    {
        "calls": pd.array([None, 3, 0, 7], dtype="Int64"),
        "usage": [NAN, 1e6, -4.0, 50.0],
        "charge": [-1.0, None, 12.5, 0.0],
        "active": pd.array([True, None, False, True], dtype="boolean"),
        "plan": [None, "gold", "premium", "basic"],
        "region": ["south", None, "east", "north"],
    }
)
EXPECTED = np.array(
    [
        [3, 7.25, 0.0, 1, 0, 1],
        [3, 50.0, NAN, NAN, NAN, NAN],
        [0, 0.0, 12.5, 0, 2, NAN],
        [7, 50.0, 0.0, 1, 0, 0],
    ],
    dtype=np.float32,
)


def test_each_step_fills_clips_and_codes_missing_as_nan() -> None:
    found = STEPS.frame_matrix(ROWS)
    assert found.dtype == np.float32 and found.shape == (4, 6)
    np.testing.assert_array_equal(found, EXPECTED)  # NaN == NaN here


def test_arrow_columns_give_the_same_matrix_as_pandas_rows() -> None:
    table = pa.Table.from_pandas(ROWS)
    from_arrow = STEPS.matrix({name: table.column(name) for name in STEPS.features})
    np.testing.assert_array_equal(from_arrow, STEPS.frame_matrix(ROWS))


def test_integers_and_text_numbers_as_json_gives_them() -> None:
    """Rows from a JSON body: ints where the column is a double, None for missing."""
    records = pd.DataFrame([{"calls": 1, "usage": 3, "charge": None, "active": 1}])
    steps = Preprocessing(STEPS.steps[:4])
    np.testing.assert_array_equal(
        steps.frame_matrix(records), np.array([[1, 3, NAN, 1]], np.float32)
    )


def test_text_in_a_numeric_feature_is_refused_naming_it() -> None:
    with pytest.raises(FeatureValueError, match="feature 'usage'"):
        transformed(STEPS.steps[1], pa.array(["a lot"]))


def test_a_missing_feature_column_is_named() -> None:
    with pytest.raises(KeyError, match=r"\['region'\]"):
        STEPS.frame_matrix(ROWS.drop(columns=["region"]))


def test_json_round_trip_keeps_every_step() -> None:
    again = Preprocessing.from_json(STEPS.to_json())
    assert again == STEPS
    np.testing.assert_array_equal(again.frame_matrix(ROWS), EXPECTED)


def test_in_spark_the_frame_gets_the_same_values(spark: SparkSession) -> None:
    """Training's path (mapInArrow over a Spark frame) equals the pandas path, column types and
    all: the other columns pass through untouched."""
    frame = spark.createDataFrame(
        ROWS.assign(id=["a", "b", "c", "d"]),
        "calls long, usage double, charge double, active boolean, plan string, region string, "
        "id string",
    )
    out = frame.transform(preprocessed, STEPS)
    assert {f.name: f.dataType.simpleString() for f in out.schema.fields} == {
        **dict.fromkeys(STEPS.features, "float"),
        "id": "string",
    }
    rows = out.orderBy("id").toPandas()
    np.testing.assert_array_equal(rows[STEPS.features].to_numpy(np.float32), EXPECTED)
    assert list(rows["id"]) == ["a", "b", "c", "d"]


TRAIN = [  # split, usage, calls, plan
    ("train", 1.0, 1, "basic"),
    ("train", 2.0, 2, "basic"),
    ("train", 3.0, 3, "premium"),
    ("train", None, None, "gold"),
    ("train", 100.0, 4, "basic"),
    ("test", 9000.0, 50, "platinum"),  # not train: moves nothing
]


def test_fitted_on_train_rows_only(spark: SparkSession, churn) -> None:
    frame = spark.createDataFrame(
        TRAIN, f"{SPLIT} string, data_usage_gb double, support_calls int, plan string"
    )
    usecase = churn.model_copy(
        update={
            "numeric_features": ["data_usage_gb", "support_calls"],
            "categorical_features": {"plan": LearnedLevels(min_count=1)},
            "cleaning": CleaningSettings(
                impute={"data_usage_gb": ImputeRule(strategy="mean")},
                fill={"support_calls": 0},
                clip={"data_usage_gb": RangeRule(min=0)},
                outliers={"support_calls": OutlierRule(method="iqr", k=1.0)},
            ),
        }
    )
    train = frame.where(f"{SPLIT} = 'train'")
    steps = {s.name: s for s in fit_preprocessing(train, usecase=usecase).steps}

    assert steps["data_usage_gb"].fill == pytest.approx(26.5)  # (1 + 2 + 3 + 100) / 4
    assert steps["data_usage_gb"].clips == [(0.0, None)]
    assert steps["support_calls"].fill == 0 and steps["support_calls"].integral
    assert steps["support_calls"].clips == [(-1.0, 5.0)]  # quartiles 1 and 3, k = 1
    assert steps["plan"].levels == ["basic", "gold", "premium"]  # by count, ties by value


def test_learned_levels_keep_the_most_frequent_seen_enough(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [(v,) for v in ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None] * 9], "x string"
    )
    assert learned_levels(frame, "x", LearnedLevels(max_levels=2, min_count=1)) == ["a", "b"]
    assert learned_levels(frame, "x", LearnedLevels(min_count=3)) == ["a", "b", "c"]


# Spark SQL a use case may derive features with, each (expression, declared type): nulls, NaN,
# integer division, text, dates and a boolean cast to int.
DERIVED = {
    "late": ("CASE WHEN delay IS NULL THEN NULL ELSE delay >= 15 END", "int"),
    "per_year": ("tenure / 12", "double"),
    "rounded": ("round(usage * 1.5, 1)", "double"),
    "bucket": ("if(usage > 10, 'heavy', 'light')", "string"),
    "code": ("lower(trim(plan))", "string"),
    "prefix": ("substring(plan, 1, 3)", "string"),
    "calls_or_zero": ("coalesce(delay, 0) + 1", "long"),
    "signup_year": ("year(signup)", "int"),
    "days": ("datediff(signup, to_date('2020-01-01'))", "int"),
    "either": ("delay > 30 OR usage > 50", "int"),
}
SOURCE = pd.DataFrame(
    {
        "delay": pd.array([None, 15, 3, 40], dtype="Int64"),
        "tenure": pd.array([25, None, 0, 7], dtype="Int64"),
        "usage": [NAN, 60.0, 10.0, 4.25],
        "plan": [" Basic", None, "premium ", "PRO"],
        "signup": pd.to_datetime(["2021-03-04", None, "2019-12-31", "2024-02-29"]).date,
    }
)


def test_derived_features_from_source_rows_equal_what_spark_derived(spark: SparkSession) -> None:
    """The package's DuckDB translation of each derived column gives what clean's Spark gave."""
    from prescore.config import DerivedColumn
    from prescore.data.cleaning import add_derived_columns
    from prescore.training.package import derived_step

    derive = {name: DerivedColumn(sql=sql, type=kind) for name, (sql, kind) in DERIVED.items()}
    frame = spark.createDataFrame(
        SOURCE.astype(object).where(SOURCE.notna(), None),
        "delay long, tenure long, usage double, plan string, signup date",
    )
    by_spark = frame.transform(add_derived_columns, derive=derive).toPandas()
    preprocessing = Preprocessing(
        steps=[],
        derived=[derived_step(n, d.sql, d.type, sorted(d.columns)) for n, d in derive.items()],
    )
    by_duckdb = preprocessing.with_derived({c: SOURCE[c] for c in SOURCE.columns})
    for name in DERIVED:
        found = by_duckdb[name].to_pylist()
        expected = [None if pd.isna(v) else v for v in by_spark[name]]
        assert found == expected, name


def test_a_derived_feature_is_computed_only_when_absent() -> None:
    from prescore.training.package import derived_step

    preprocessing = Preprocessing(
        steps=[FeatureStep("late", "numeric"), FeatureStep("usage", "numeric")],
        derived=[derived_step("late", DERIVED["late"][0], "int", ["delay"])],
    )
    assert preprocessing.inputs == ["usage", "delay"]
    from_sources = preprocessing.frame_matrix(SOURCE)
    np.testing.assert_array_equal(from_sources[:, 0], [NAN, 1, 0, 1])
    given = preprocessing.frame_matrix(SOURCE.assign(late=[1, 1, 1, 1]))  # as clean holds it
    np.testing.assert_array_equal(given[:, 0], [1, 1, 1, 1])
    with pytest.raises(KeyError, match=r"\['delay'\]"):
        preprocessing.frame_matrix(SOURCE.drop(columns=["delay"]))
    assert Preprocessing.from_json(preprocessing.to_json()) == preprocessing
