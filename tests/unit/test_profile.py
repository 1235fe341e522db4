"""Batch profile (a few Spark aggregations) and the HTML report built from it, on small frames."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import date

import numpy as np
import pytest
from chispa import assert_df_equality
from matplotlib import image as mpimg
from pyspark.sql import DataFrame, SparkSession

from prescore.data import profile
from prescore.data.profile import (
    ColumnProfile,
    ProfileHistory,
    ProfilePlan,
    bin_counts,
    bin_edges,
    compute_profile,
    joint_value_counts,
    stacked_value_counts,
    value_counts,
)
from prescore.data.report import render_report

pytestmark = pytest.mark.unit

SCHEMA = "id string, email string, tenure int, charges double, plan string, churned int"
ROWS = [
    ("a", "a@x.org", 1, 10.0, "basic", 0),
    ("b", "b@x.org", 2, 20.0, "basic", 0),
    ("c", None, 3, None, "premium", 1),
    ("d", "d@x.org", 4, 40.0, None, 1),
    ("e", "e@x.org", 10, 100.0, "basic", 0),
]
PLAN = ProfilePlan(
    dtypes={
        "id": "string",
        "email": "string",
        "tenure": "int",
        "charges": "double",
        "plan": "string",
        "churned": "int",
    },
    roles={
        "id": "key",
        "email": "pii",
        "tenure": "feature",
        "charges": "feature",
        "plan": "feature",
        "churned": "label",
    },
    histogram=["tenure", "charges", "churned"],
    top_values=["plan", "churned"],
    correlated=["tenure", "charges", "churned"],
)


@pytest.fixture(scope="module")
def frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, SCHEMA)


@pytest.fixture(scope="module")
def profiles(frame: DataFrame) -> dict[str, ColumnProfile]:
    return {p.column: p for p in compute_profile(frame, plan=PLAN)}


def test_plan_for_churn_profiles_pii_by_counts_only(churn) -> None:
    plan = ProfilePlan.for_usecase(churn, [*churn.source.schema_, "run_date", "_source_file"])

    assert list(plan.dtypes) == list(churn.source.schema_)  # lineage columns left out
    assert plan.roles["email"] == "pii" and plan.roles["customer_id"] == "key"
    assert "email" not in plan.top_values and "email" not in plan.histogram
    assert plan.top_values == [*churn.categorical_features, churn.label]
    assert plan.correlated == [*churn.numeric_features, churn.label]


def test_counts_nulls_and_moments(profiles: dict[str, ColumnProfile]) -> None:
    charges = profiles["charges"]
    values = np.array([10.0, 20.0, 40.0, 100.0])

    assert (charges.rows, charges.nulls, charges.null_rate) == (5, 1, pytest.approx(0.2))
    assert (charges.min, charges.max) == ("10.0", "100.0")
    assert charges.mean == pytest.approx(values.mean())
    assert charges.stddev == pytest.approx(values.std(ddof=1))
    assert charges.distinct_approx == 4
    assert charges.loaded("quantiles")["0.5"] == 20.0  # percentile_approx: an actual value
    assert profiles["plan"].nulls == 1 and profiles["plan"].mean is None


def test_pii_column_has_no_values_in_the_profile(profiles: dict[str, ColumnProfile]) -> None:
    email = profiles["email"]

    assert (email.nulls, email.distinct_approx) == (1, 4)
    assert email.min is email.max is email.top_values is email.histogram is None


def test_histogram_counts_every_non_null_value(profiles: dict[str, ColumnProfile]) -> None:
    histogram = profiles["tenure"].loaded("histogram")

    assert histogram["edges"][0] == 1.0 and histogram["edges"][-1] == 10.0
    assert len(histogram["counts"]) == len(histogram["edges"]) - 1
    assert sum(histogram["counts"]) == 5
    assert histogram["counts"][-1] == 1  # the maximum falls in the last bin, not past it
    assert sum(profiles["charges"].loaded("histogram")["counts"]) == 4


def test_label_gets_bins_and_values_apart(profiles: dict[str, ColumnProfile]) -> None:
    churned = profiles["churned"]

    assert churned.loaded("top_values") == [["0", 3], ["1", 2]]
    assert sum(churned.loaded("histogram")["counts"]) == 5


def test_top_values_most_frequent_first(profiles: dict[str, ColumnProfile]) -> None:
    assert profiles["plan"].loaded("top_values") == [["basic", 3], ["premium", 1]]


def test_quantiles_and_correlations_of_a_large_frame_come_from_a_stable_sample_of_its_rows(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20,000 rows, 2,000 of which feed the sketch: value i is the (i + 1)/20,000 quantile.
    monkeypatch.setattr(profile, "SAMPLE_ROWS", 2_000)
    rows = spark.range(20_000).selectExpr(
        "concat('k', id) as id", "cast(id as double) as value", "cast(id % 1000 as double) as cycle"
    )
    plan = ProfilePlan(
        dtypes={"id": "string", "value": "double", "cycle": "double"},
        roles={"id": "key", "value": "feature", "cycle": "feature"},
        histogram=[],
        top_values=[],
        correlated=["value", "cycle"],
    )

    def value_profile(frame: DataFrame) -> ColumnProfile:
        return {p.column: p for p in compute_profile(frame, plan=plan)}["value"]

    def picked(frame: DataFrame) -> set[str]:
        in_sample = profile.in_sample(frame, plan, 0.1)
        return {r.id for r in frame.where(in_sample).select("id").collect()}

    sampled = value_profile(rows.repartition(3))
    monkeypatch.setattr(profile, "SAMPLE_ROWS", 20_000)
    every_row = value_profile(rows)

    assert 1_800 <= len(picked(rows.repartition(3))) <= 2_200
    assert picked(rows.repartition(3)) == picked(rows.repartition(1))  # however partitioned
    assert sampled.rows == every_row.rows == 20_000  # counts and moments see every row
    assert sampled.mean == every_row.mean
    assert sampled.loaded("quantiles") != every_row.loaded("quantiles")  # a sample's sketch
    for q, value in sampled.loaded("quantiles").items():
        # 4 standard deviations of a 2,000-row sample's rank error at most (0.011 at the median)
        assert abs((value + 1) / 20_000 - float(q)) <= 0.045
    sampled_r = sampled.loaded("correlations")["cycle"]
    every_r = every_row.loaded("correlations")["cycle"]
    assert sampled_r != every_r  # from the sample's rows
    assert abs(sampled_r - every_r) <= 0.09  # 4 standard errors of r on 2,000 rows


def test_correlations_match_numpy_pairwise(profiles: dict[str, ColumnProfile]) -> None:
    tenure, charges = np.array([1, 2, 4, 10.0]), np.array([10.0, 20.0, 40.0, 100.0])
    churned = np.array([0, 0, 1, 1, 0.0])

    correlations = profiles["tenure"].loaded("correlations")

    assert correlations["charges"] == pytest.approx(np.corrcoef(tenure, charges)[0, 1])
    assert correlations["churned"] == pytest.approx(
        np.corrcoef(np.array([1, 2, 3, 4, 10.0]), churned)[0, 1]
    )
    assert profiles["charges"].loaded("correlations")["tenure"] == correlations["charges"]


def test_value_counts_keep_each_columns_top_values(spark: SparkSession, frame: DataFrame) -> None:
    counted = value_counts(frame, categorical=["plan", "churned"], top=1)

    expected = spark.createDataFrame(
        [("plan", "basic", 3), ("churned", "0", 3)], "column string, value string, count long"
    )
    assert_df_equality(counted, expected, ignore_row_order=True, ignore_nullable=True)


def test_bin_counts_put_the_maximum_in_the_last_bin_and_skip_nulls(frame: DataFrame) -> None:
    counts = bin_counts(frame, edges={"tenure": [1.0, 5.5, 10.0], "charges": [10.0, 55.0, 100.0]})

    assert counts == {"tenure": [4, 1], "charges": [3, 1]}


def test_joint_value_counts_count_every_value_with_nulls_apart(frame: DataFrame) -> None:
    counts = joint_value_counts(frame, categorical=["plan", "churned"])

    assert counts == {"plan": {"basic": 3, "premium": 1, None: 1}, "churned": {"0": 3, "1": 2}}


def test_joint_value_counts_give_up_past_the_limit_of_combinations(frame: DataFrame) -> None:
    # (basic, 0), (premium, 1), (null, 1), (basic, 0)... : 3 combinations
    assert joint_value_counts(frame, categorical=["plan", "churned"], limit=3) is not None
    assert joint_value_counts(frame, categorical=["plan", "churned"], limit=2) is None


def test_stacked_value_counts_keep_each_columns_top_values(frame: DataFrame) -> None:
    counts = stacked_value_counts(frame, categorical=["plan", "churned"], top=1)

    assert counts == {"plan": {"basic": 3}, "churned": {"0": 3}}


def test_too_many_combinations_profile_the_categoricals_as_well_as_few(
    frame: DataFrame, profiles: dict[str, ColumnProfile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile, "JOINT_GROUPS_LIMIT", 1)

    stacked = {p.column: p for p in compute_profile(frame, plan=PLAN)}

    for column in ("plan", "churned"):
        assert stacked[column] == profiles[column]  # sketches and stacked counts, not the joint


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0.0, 4.0, [0.0, 1.0, 2.0, 3.0, 4.0]), (2.0, 2.0, [2.0, 2.0]), (None, None, [])],
    ids=["range", "constant", "all_null"],
)
def test_bin_edges(lo, hi, expected) -> None:
    assert bin_edges(lo, hi, bins=4) == expected


def test_report_is_one_self_contained_page_with_readable_plots(
    profiles: dict[str, ColumnProfile],
) -> None:
    history = ProfileHistory.from_rows(
        [(date(2024, 3, 1), "charges", 0.1), (date(2024, 3, 2), "charges", 0.2)]
    )

    html = render_report(
        title="churn <test>", profiles=list(profiles.values()), outcomes=[], history=history
    )

    assert "churn &lt;test&gt;" in html  # escaped
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)  # nothing fetched from outside
    images = re.findall(
        r'<h2>([^<]+)</h2>\s*<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html
    )
    assert [name for name, _ in images] == [
        "Distributions",
        "Top values",
        "Correlation",
        "Null rate over time",
    ]
    for _, encoded in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(encoded)), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 300
        assert pixels.std() > 0.05  # not a blank canvas
    assert json.dumps("charges")[1:-1] in html
