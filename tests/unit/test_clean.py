"""Clean-stage transforms on small explicit-schema frames."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from prescore.config import (
    CleaningSettings,
    ImputeRule,
    OutlierRule,
    PiiRule,
    RangeRule,
    SplitSettings,
    UseCase,
)
from prescore.data.cleaning import (
    DUPLICATE_REASON,
    REASON,
    SPLIT,
    DuplicateKeyError,
    FittedCleaning,
    anonymise,
    assign_split,
    clean_columns,
    clean_rows,
    fit_on_train,
    fitted_from,
    flag_duplicates,
    flag_fitted_rules,
    flag_invalid_rows,
    quarantine_rows,
    refuse_duplicate_keys,
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


def test_without_event_time_a_duplicate_key_is_refused_naming_it(spark: SparkSession) -> None:
    """No event_time says which row of a key is the latest: refused, never guessed. Rows already
    flagged (a null key, an invalid value) are not duplicates of the valid one."""
    df = spark.createDataFrame(
        [
            ("s1", "i1", 3, None),
            ("s1", "i1", 4, None),
            ("s2", "i1", 5, None),
            ("s2", "i1", 6, None),
            ("s2", "i1", 7, None),
            ("s3", "i1", -1, "sales=-1 outside [0.0, inf]"),
            ("s3", "i1", 8, None),
        ],
        f"store string, item string, sales int, {REASON} string",
    )
    with pytest.raises(DuplicateKeyError) as caught:
        refuse_duplicate_keys(
            df, keys=["store", "item"], table="raw_sales", run_date=date(2026, 3, 1)
        )
    assert str(caught.value).startswith(
        "raw_sales run_date 2026-03-01: 2 key(s) of ['store', 'item'] are held by more than one "
        "row (5 rows), e.g. store='s1', item='i1'; the use case declares no event_time"
    )
    refuse_duplicate_keys(  # unique keys once the flagged rows are left aside: nothing raised
        df.where("sales != 4 and sales < 6"),
        keys=["store", "item"],
        table="t",
        run_date=date(2026, 3, 1),
    )


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


@pytest.mark.parametrize(
    "secret",
    [b"k", b"x" * 64, "clé-secrète-ü".encode()],  # short, exactly one block, non-ASCII
    ids=["short", "block", "utf8"],
)
def test_hmac_matches_python_hmac_for_every_value(spark: SparkSession, secret: bytes) -> None:
    values = ["ana@example.com", "", "+44 20 7946 0958", "Zoë O'Brien", "x" * 300]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "id int, v string")
    out = {
        r.id: r.v for r in anonymise(df, pii={"v": PiiRule(method="hash")}, secret=secret).collect()
    }
    assert out == {
        i: hmac.new(secret, v.encode(), hashlib.sha256).hexdigest() for i, v in enumerate(values)
    }


def test_quarantine_rows_carry_pii_anonymised_as_declared(spark: SparkSession) -> None:
    """hash, drop and generalise as clean does: no PII value of the row stays in the clear."""
    day = date(2026, 11, 1)
    df = spark.createDataFrame(
        [
            (
                "C1",
                "ana@example.com",
                "Ana Lima",
                34,
                -5,
                "f1",
                "tenure=-5 outside [0.0, 600.0]",
                day,
            )
        ],
        f"id string, email string, name string, age int, tenure int, _source_file string, "
        f"{REASON} string, run_date date",
    )
    pii = {
        "email": PiiRule(method="hash"),
        "name": PiiRule(method="drop"),
        "age": PiiRule(method="generalise", band=10),
    }
    out = quarantine_rows(df, pii=pii, secret=SECRET)
    assert out.columns == ["raw_row", "reason", "source_file", "run_date"]
    row = out.first()
    assert row is not None
    assert json.loads(row.raw_row) == {
        "id": "C1",
        "email": hmac.new(SECRET, b"ana@example.com", hashlib.sha256).hexdigest(),
        "age": "30-39",
        "tenure": -5,
        "_source_file": "f1",
    }
    assert (row.reason, row.source_file, row.run_date) == (
        "tenure=-5 outside [0.0, 600.0]",
        "f1",
        day,
    )


def test_a_range_reason_never_quotes_a_pii_value(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a", 17, 7), ("b", 30, -1)], "id string, age int, tenure int")
    flagged = flag_invalid_rows(
        df,
        keys=["id"],
        valid_range={"age": RangeRule(min=18), "tenure": RangeRule(min=0)},
        pii={"age"},
    )
    reasons = {r.id: r[REASON] for r in flagged.collect()}
    assert reasons == {"a": "age outside [18.0, inf]", "b": "tenure=-1 outside [0.0, inf]"}


def test_split_is_stable_across_partitioning(spark: SparkSession) -> None:
    df = spark.range(2000).select(F.format_string("C%08d", "id").alias("customer_id"))
    split = SplitSettings(train=0.7, validation=0.15, test=0.15, seed=42)
    one = assign_split(df.coalesce(1), keys=["customer_id"], split=split)
    many = assign_split(df.repartition(7), keys=["customer_id"], split=split)
    assert_df_equality(one, many, ignore_row_order=True)
    shares = {r.split: r["count"] / 2000 for r in one.groupBy("split").count().collect()}
    assert shares["train"] == pytest.approx(0.7, abs=0.04)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)


# ---------------------------------------------------------------- per-column rules


def test_generalise_bands_numbers_and_truncates_text(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("a", 34, "SW1A 1AA"), ("b", 40, "M1 1AE"), ("c", None, None)],
        "id string, age int, postcode string",
    )
    out = anonymise(
        df,
        pii={
            "age": PiiRule(method="generalise", band=10),
            "postcode": PiiRule(method="generalise", keep=3),
        },
        secret=SECRET,
    )
    expected = spark.createDataFrame(
        [("a", "30-39", "SW1"), ("b", "40-49", "M1 "), ("c", None, None)],
        "id string, age string, postcode string",
    )
    assert_df_equality(out, expected, ignore_row_order=True)


TRAIN_ROWS = [  # id, split, usage, plan, charge, reason
    ("a", "train", 1.0, "basic", 10.0, None),
    ("b", "train", 2.0, "basic", 11.0, None),
    ("c", "train", 6.0, "premium", 12.0, None),
    ("d", "train", None, None, 13.0, None),
    ("e", "test", 1000.0, "premium", 9000.0, None),  # not train: must not move the statistics
    ("f", "train", 500.0, "premium", 9000.0, DUPLICATE_REASON),  # flagged: ignored too
]
TRAIN_SCHEMA = (
    f"id string, {SPLIT} string, usage double, plan string, charge double, {REASON} string"
)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (ImputeRule(strategy="mean"), 3.0),
        (ImputeRule(strategy="median"), 2.0),
        (ImputeRule(strategy="constant", value=-1), -1),
    ],
    ids=["mean", "median", "constant"],
)
def test_fill_values_are_fitted_on_valid_train_rows_only(
    spark: SparkSession, rule: ImputeRule, expected: float
) -> None:
    flagged = spark.createDataFrame(TRAIN_ROWS, TRAIN_SCHEMA)
    cleaning = CleaningSettings(impute={"usage": rule, "plan": ImputeRule(strategy="mode")})

    fitted = fit_on_train(flagged, cleaning=cleaning)

    assert fitted.fill == {"usage": expected, "plan": "basic"}


@pytest.mark.parametrize(
    ("outlier", "low", "high"),
    [
        # percentile_approx returns observed values: q1 = 10, q3 = 12 of 10..13
        (OutlierRule(method="iqr", k=1.5), 10.0 - 1.5 * 2.0, 12.0 + 1.5 * 2.0),
        (OutlierRule(method="zscore", k=2.0), 11.5 - 2 * 1.2909944, 11.5 + 2 * 1.2909944),
    ],
    ids=["iqr", "zscore"],
)
def test_outlier_bounds_are_fitted_on_train(
    spark: SparkSession, outlier: OutlierRule, low: float, high: float
) -> None:
    flagged = spark.createDataFrame(TRAIN_ROWS, TRAIN_SCHEMA)

    fitted = fit_on_train(flagged, cleaning=CleaningSettings(outliers={"charge": outlier}))

    assert fitted.bounds["charge"].min == pytest.approx(low)
    assert fitted.bounds["charge"].max == pytest.approx(high)
    assert fitted.fitted_rows == 4


def test_a_column_of_nulls_fits_no_value() -> None:
    cleaning = CleaningSettings(
        impute={"usage": ImputeRule(strategy="mean")},
        outliers={"charge": OutlierRule(method="zscore")},
    )
    fitted = fitted_from(
        {"rows": 0, "mean__usage": None, "zmean__charge": None, "zstd__charge": None}, cleaning
    )
    assert fitted == FittedCleaning(fill={}, bounds={}, fitted_rows=0)


def test_flag_fitted_rules_quarantines_drop_and_outliers(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("a", 5.0, 1.0, None),
            ("b", None, 1.0, None),
            ("c", 5.0, 99.0, None),
            ("d", None, 99.0, "null key id"),
        ],
        f"id string, usage double, charge double, {REASON} string",
    )
    flagged = flag_fitted_rules(
        df,
        impute={"usage": ImputeRule(strategy="drop")},
        outliers={"charge": OutlierRule(method="iqr", action="quarantine")},
        bounds={"charge": RangeRule(min=0.0, max=10.0)},
    )
    expected = spark.createDataFrame(
        [
            ("a", 5.0, 1.0, None),
            ("b", None, 1.0, "missing usage (impute: drop)"),
            ("c", 5.0, 99.0, "charge=99.0 outside fitted iqr bounds [0.0, 10.0]"),
            ("d", None, 99.0, "null key id"),  # the first reason stays
        ],
        f"id string, usage double, charge double, {REASON} string",
    )
    assert_df_equality(flagged, expected, ignore_row_order=True)


def test_clean_rows_keep_values_as_they_came_and_drop_columns(
    spark: SparkSession, churn: UseCase
) -> None:
    usecase = churn.model_copy(
        update={
            "cleaning": CleaningSettings(
                impute={"data_usage_gb": ImputeRule(strategy="median")},
                outliers={"total_charges": OutlierRule(method="iqr", action="clip")},
                drop_columns=["signup_date"],
            )
        }
    )
    raw = spark.createDataFrame(
        [("C1", None, 5000.0), ("C2", 3.0, 10.0)],
        "customer_id string, data_usage_gb double, total_charges double",
    )
    for column, kind in churn.source.schema_.items():
        if column not in raw.columns:
            raw = raw.withColumn(column, F.lit(None).cast(kind.replace("long", "bigint")))
    raw = raw.withColumn("run_date", F.lit(None).cast("date"))
    out = clean_rows(raw, usecase=usecase, secret=SECRET)

    assert "signup_date" not in out.columns and "name" not in out.columns
    assert out.columns[:-2] == clean_columns(usecase)
    # fills and clips are the model package's, fitted with each version (test_package)
    values = {r.customer_id: (r.data_usage_gb, r.total_charges) for r in out.collect()}
    assert values == {"C1": (None, 5000.0), "C2": (3.0, 10.0)}


def test_split_by_time_takes_the_last_days_as_test(spark: SparkSession) -> None:
    split = SplitSettings(by="time", validation_days=2, test_days=3)
    df = spark.createDataFrame(
        [
            ("a", datetime(2026, 11, 10, 23, 0)),  # run date: test
            ("b", datetime(2026, 11, 8, 0, 0)),  # last of 3 test days
            ("c", datetime(2026, 11, 7, 12, 0)),  # validation
            ("d", datetime(2026, 11, 6, 1, 0)),  # validation
            ("e", datetime(2026, 11, 5, 23, 59)),  # train
            ("f", None),  # no time: no split
        ],
        "id string, updated_at timestamp",
    )
    run_date = datetime(2026, 11, 10).date()

    out = assign_split(df, keys=["id"], split=split, event_time="updated_at", run_date=run_date)
    again = assign_split(
        df.repartition(3), keys=["id"], split=split, event_time="updated_at", run_date=run_date
    )

    splits = {"a": "test", "b": "test", "c": "validation", "d": "validation", "e": "train"}
    expected = spark.createDataFrame(
        [(r.id, r.updated_at, splits.get(r.id)) for r in df.collect()],
        "id string, updated_at timestamp, split string",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    assert_df_equality(out, again, ignore_row_order=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"by": "time"}, "test_days >= 1"), ({"test_days": 3}, "only apply to split by time")],
)
def test_split_settings_refuse_inconsistent_options(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        SplitSettings(**kwargs)
