"""Clean-stage transforms on small explicit-schema frames."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import PiiRule, RangeRule, SplitSettings
from prescore.stages.clean import (
    DUPLICATE_REASON,
    REASON,
    anonymise,
    assign_split,
    clip_outliers,
    encode_categoricals,
    flag_duplicates,
    flag_invalid_rows,
)

pytestmark = pytest.mark.unit
SECRET = b"unit-test-secret"


def test_flag_invalid_rows_gives_the_first_failed_rule(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("a", 5), (None, 3), ("c", -1), ("d", None)], "id string, tenure int"
    )
    flagged = flag_invalid_rows(df, keys=["id"], valid_range={"tenure": RangeRule(min=0, max=600)})
    expected = spark.createDataFrame(
        [
            ("a", 5, None),
            (None, 3, "null key id"),
            ("c", -1, "tenure=-1 outside [0.0, 600.0]"),
            ("d", None, None),
        ],
        f"id string, tenure int, {REASON} string",
    )
    assert_df_equality(flagged, expected, ignore_row_order=True)


def test_flag_duplicates_keeps_latest_valid_row(spark: SparkSession) -> None:
    t1, t2, t3 = datetime(2026, 1, 1), datetime(2026, 1, 2), datetime(2026, 1, 3)
    df = spark.createDataFrame(
        [
            ("a", t1, "f", None),
            ("a", t2, "f", None),  # latest valid: kept
            ("a", t3, "f", "tenure=-1 outside [0.0, 600.0]"),  # newer but invalid: stays invalid
            ("b", t1, "f", None),
        ],
        f"id string, updated_at timestamp, _source_file string, {REASON} string",
    )
    flagged = flag_duplicates(df, keys=["id"], event_time="updated_at")
    reasons = {(r.id, r.updated_at): r[REASON] for r in flagged.collect()}
    assert reasons == {
        ("a", t1): DUPLICATE_REASON,
        ("a", t2): None,
        ("a", t3): "tenure=-1 outside [0.0, 600.0]",
        ("b", t1): None,
    }


def test_anonymise_hashes_with_hmac_sha256_and_drops(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("a", "ana@example.com", "Ana"), ("b", None, "Ben")],
        "id string, email string, name string",
    )
    out = anonymise(
        df, pii={"email": PiiRule(method="hash"), "name": PiiRule(method="drop")}, secret=SECRET
    )
    assert out.columns == ["id", "email"]
    rows = {r.id: r.email for r in out.collect()}
    assert rows["a"] == hmac.new(SECRET, b"ana@example.com", hashlib.sha256).hexdigest()
    assert rows["b"] is None


def test_hmac_matches_python_for_long_keys(spark: SparkSession) -> None:
    long_secret = b"k" * 100  # longer than the SHA-256 block: RFC 2104 hashes the key first
    df = spark.createDataFrame([("x", "+1-555-0000001")], "id string, phone string")
    out = anonymise(df, pii={"phone": PiiRule(method="hash")}, secret=long_secret).first()
    assert out is not None
    assert out.phone == hmac.new(long_secret, b"+1-555-0000001", hashlib.sha256).hexdigest()


def test_clip_outliers_keeps_nulls(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, 5000.0), (2, -3.0), (3, None), (4, 42.0)], "id int, charge double"
    )
    out = clip_outliers(df, clip={"charge": RangeRule(min=0, max=500)})
    expected = spark.createDataFrame(
        [(1, 500.0), (2, 0.0), (3, None), (4, 42.0)], "id int, charge double"
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_encode_categoricals_maps_unknown_to_null(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, "basic"), (2, "premium"), (3, "gold"), (4, None)], "id int, plan string"
    )
    out = encode_categoricals(df, levels={"plan": ["basic", "standard", "premium"]})
    expected = spark.createDataFrame([(1, 0), (2, 2), (3, None), (4, None)], "id int, plan int")
    assert_df_equality(out, expected, ignore_row_order=True)


def test_split_is_stable_across_partitioning(spark: SparkSession) -> None:
    df = spark.range(2000).select(F.format_string("C%08d", "id").alias("customer_id"))
    split = SplitSettings(train=0.7, validation=0.15, test=0.15, seed=42)
    one = assign_split(df.coalesce(1), keys=["customer_id"], split=split)
    many = assign_split(df.repartition(7), keys=["customer_id"], split=split)
    assert_df_equality(one, many, ignore_row_order=True)
    shares = {r.split: r["count"] / 2000 for r in one.groupBy("split").count().collect()}
    assert shares["train"] == pytest.approx(0.7, abs=0.04)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
