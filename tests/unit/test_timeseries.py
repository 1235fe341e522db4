"""Time-series features without leakage, the time_series config block, date keys and the sales
generator: pure transforms on a local SparkSession and plain functions."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession

from prescore.catalog import SPLIT
from prescore.config import (
    DEFAULT_CONF_DIR,
    TARGET_DATE,
    ConfigError,
    Settings,
    UseCase,
    load_settings,
    load_usecase,
)
from prescore.data.cleaning import assign_split
from prescore.demo.datagen import sales_chunks
from prescore.serving import keyindex
from prescore.training import timeseries

pytestmark = pytest.mark.unit

T = date(2026, 3, 31)  # the origin day of the tests
SCHEMA = "store_id string, item_id string, date date, sales int, promo int"


@pytest.fixture(scope="module")
def forecast(settings: Settings) -> UseCase:
    return load_usecase("forecast", settings)


def _history(spark: SparkSession, values: dict[date, int], series: str = "I1") -> DataFrame:
    rows = [("S1", series, day, sales, 0) for day, sales in sorted(values.items())]
    return spark.createDataFrame(rows, SCHEMA)


def _days(last: date, n: int, start: int = 10) -> dict[date, int]:
    """n consecutive days ending at `last`, with distinct sales start, start+1, ..."""
    return {last - timedelta(days=n - 1 - i): start + i for i in range(n)}


def _features(frame: DataFrame, usecase: UseCase) -> list[dict[str, object]]:
    rows = frame.orderBy(TARGET_DATE).collect()
    return [{c: r[c] for c in usecase.features} for r in rows]


def test_origin_features_never_read_a_day_after_the_origin(
    spark: SparkSession, forecast: UseCase
) -> None:
    values = _days(T + timedelta(days=10), 60)
    changed = {d: (v * 7 + 1 if d > T else v) for d, v in values.items()}
    before = timeseries.scoring_frame(_history(spark, values), usecase=forecast, run_date=T)
    after = timeseries.scoring_frame(_history(spark, changed), usecase=forecast, run_date=T)
    assert before.count() == forecast.time_series.horizon_days  # type: ignore[union-attr]
    assert _features(before, forecast) == _features(after, forecast)


def test_the_origin_day_itself_is_lag_0_and_nothing_else_sees_later_days(
    spark: SparkSession, forecast: UseCase
) -> None:
    values = _days(T, 40)
    row = timeseries.scoring_frame(_history(spark, values), usecase=forecast, run_date=T).first()
    assert row is not None
    assert row["sales_lag_0"] == values[T]
    assert row["sales_lag_1"] == values[T - timedelta(days=1)]
    assert row["sales_lag_27"] == values[T - timedelta(days=27)]
    week = [values[T - timedelta(days=i)] for i in range(7)]
    assert row["sales_mean_7d"] == pytest.approx(sum(week) / 7)


def test_a_missing_day_gives_a_null_lag_not_the_previous_row(
    spark: SparkSession, forecast: UseCase
) -> None:
    values = _days(T, 40)
    del values[T - timedelta(days=1)]
    row = timeseries.scoring_frame(_history(spark, values), usecase=forecast, run_date=T).first()
    assert row is not None
    assert row["sales_lag_1"] is None
    assert row["sales_lag_6"] == values[T - timedelta(days=6)]
    observed = [values[T - timedelta(days=i)] for i in range(7) if i != 1]
    assert row["sales_mean_7d"] == pytest.approx(sum(observed) / 6)  # the observed days only


def test_an_unobserved_origin_day_still_gets_its_forecasts(
    spark: SparkSession, forecast: UseCase
) -> None:
    values = _days(T - timedelta(days=1), 40)  # nothing on T itself
    frame = timeseries.scoring_frame(_history(spark, values), usecase=forecast, run_date=T)
    rows = frame.orderBy("horizon").collect()
    assert [r[TARGET_DATE] for r in rows] == [T + timedelta(days=h) for h in range(1, 8)]
    assert rows[0]["sales_lag_0"] is None
    assert rows[0]["sales_lag_1"] == values[T - timedelta(days=1)]


def test_calendar_features_describe_the_target_day(spark: SparkSession, forecast: UseCase) -> None:
    day = date(2026, 12, 24)  # a Thursday, and a holiday in forecast.yaml
    values = _days(day - timedelta(days=1), 40)
    frame = timeseries.scoring_frame(
        _history(spark, values), usecase=forecast, run_date=day - timedelta(days=1)
    )
    first = frame.where("horizon = 1").first()
    assert first is not None and first[TARGET_DATE] == day
    assert (first["day_of_week"], first["month"], first["day_of_month"]) == (5, 12, 24)
    assert first["holiday"] == 1
    after = frame.where("horizon = 3").first()  # 12-26: not a holiday
    assert after is not None and after["holiday"] == 0


def test_training_labels_are_the_target_day_values_and_missing_targets_are_dropped(
    spark: SparkSession, forecast: UseCase
) -> None:
    values = _days(T, 60)
    del values[T - timedelta(days=3)]
    frame = timeseries.supervised_frame(_history(spark, values), usecase=forecast, run_date=T)
    rows = frame.select("origin_date", "horizon", TARGET_DATE, "sales").collect()
    assert rows
    for row in rows:
        assert row[TARGET_DATE] == row["origin_date"] + timedelta(days=row["horizon"])
        assert row["sales"] == values[row[TARGET_DATE]]
    assert max(r[TARGET_DATE] for r in rows) == T  # nothing beyond the run date
    assert T - timedelta(days=3) not in {r[TARGET_DATE] for r in rows}


def test_split_on_the_target_day_keeps_every_training_label_before_the_test_labels(
    spark: SparkSession, forecast: UseCase
) -> None:
    frame = timeseries.supervised_frame(
        _history(spark, _days(T, 90)), usecase=forecast, run_date=T
    ).transform(
        assign_split,
        keys=forecast.published_keys,
        split=forecast.split,
        event_time=TARGET_DATE,
        run_date=T,
    )
    spans = {
        r[SPLIT]: (r["first"], r["last"])
        for r in frame.groupBy(SPLIT)
        .agg({TARGET_DATE: "min"})
        .withColumnRenamed(f"min({TARGET_DATE})", "first")
        .join(
            frame.groupBy(SPLIT)
            .agg({TARGET_DATE: "max"})
            .withColumnRenamed(f"max({TARGET_DATE})", "last"),
            SPLIT,
        )
        .collect()
    }
    assert spans["train"][1] < spans["validation"][0] <= spans["validation"][1] < spans["test"][0]
    assert spans["test"] == (T - timedelta(days=13), T)


def test_latest_rows_reads_each_day_as_known_at_the_run_date(
    spark: SparkSession, forecast: UseCase
) -> None:
    day = T - timedelta(days=2)
    rows = [
        ("S1", "I1", day, 5, 0, T - timedelta(days=2)),
        ("S1", "I1", day, 9, 0, T - timedelta(days=1)),  # corrected a day later: wins
        ("S1", "I1", T, 4, 0, T + timedelta(days=1)),  # landed after the run date: unseen
    ]
    clean = spark.createDataFrame(rows, f"{SCHEMA}, run_date date")
    latest = timeseries.latest_rows(clean, usecase=forecast, run_date=T, days=30).collect()
    assert [(r["date"], r["sales"]) for r in latest] == [(day, 9)]


# ---------------------------------------------------------------- configuration


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    return target


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("    date: date\n", "    date: string\n", "must be a declared date"),
        ("lags: [0, 1, 6, 13, 27]", "lags: [-1, 7]", "0 or more"),
        ("lags: [0, 1, 6, 13, 27]", "lags: [7, 7]", "distinct"),
        ("history_days: 120", "history_days: 30", "must exceed"),
        ('holidays: ["01-01"', 'holidays: ["1-1"', "not MM-DD"),
        ("split: {by: time, test_days: 14, validation_days: 14}", "split: {}", "split by: time"),
        ("task: regression", "task: binary", "task: regression"),
    ],
)
def test_time_series_block_is_checked_at_load(
    conf_dir: Path, old: str, new: str, reason: str
) -> None:
    path = conf_dir / "usecases" / "forecast.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=r"forecast\.yaml") as caught:
        load_usecase("forecast", load_settings(conf_dir))
    assert reason in str(caught.value)


def test_keys_and_features_of_a_time_series(forecast: UseCase, churn: UseCase) -> None:
    assert churn.time_series is None and churn.published_keys == churn.keys == churn.row_keys
    assert forecast.row_keys == ["store_id", "item_id", "date"]
    assert forecast.published_keys == ["store_id", "item_id", TARGET_DATE]
    assert forecast.features[0] == "promo" and forecast.features[-1] == "horizon"
    assert "sales_lag_0" in forecast.features and "holiday" in forecast.features


# ---------------------------------------------------------------- date keys and the generator


@pytest.mark.parametrize("value", [date(2026, 11, 2), "2026-11-02"])
def test_a_date_key_part_has_one_canonical_form(value: object) -> None:
    kinds: list[keyindex.KeyKind] = ["string", "date"]
    assert keyindex.canonical_key(("S1", value), kinds) == ("S1", "2026-11-02")


@pytest.mark.parametrize("value", ["2026-13-01", "2026-1-2", "tomorrow", 20261102])
def test_a_bad_date_key_part_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not a date key value"):
        keyindex.canonical_key(("S1", value), ["string", "date"])


def test_a_key_file_finds_composite_keys_ending_in_a_date(tmp_path: Path) -> None:
    days = [date(2026, 11, 2) + timedelta(days=i) for i in range(7)]
    table = pa.table(
        {
            "store_id": ["S1"] * 7,
            "target_date": pa.array(days, pa.date32()),
            "score": [float(i) for i in range(7)],
            "scored_at": pa.array([None] * 7, pa.timestamp("us")).fill_null(0),
            "valid_until": pa.array([None] * 7, pa.timestamp("us")).fill_null(0),
            "model_name": ["m"] * 7,
            "model_version": ["1"] * 7,
        }
    )
    path = tmp_path / "k.keys.arrow"
    keyindex.write_key_file(path, table, keys=["store_id", "target_date"], run_date=days[0])
    index = keyindex.KeyIndex(path)
    assert index.kinds == ["string", "date"]
    wanted = keyindex.canonical_keys(
        [("S1", days[3]), ("S1", "2026-11-08"), ("S2", days[0])], index.kinds
    )
    rows = index.find(index.needles(wanted))
    assert [index.score[r] if r >= 0 else None for r in rows] == [3.0, 6.0, None]
    assert index.find_one(wanted[1]) == rows[1]
    index.close()


def test_a_generated_day_is_the_same_in_history_and_on_its_own_run_date() -> None:
    day = date(2026, 11, 2)
    with_history = [c for c in sales_chunks(20, day + timedelta(days=3), 42, 5)]
    alone = next(sales_chunks(20, day, 42, 0))
    same_day = next(c for c in with_history if (c["date"] == day).all())
    assert same_day.reset_index(drop=True).equals(alone.reset_index(drop=True))
    assert len(with_history) == 6
