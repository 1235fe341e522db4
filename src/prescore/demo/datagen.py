"""Seeded generators of realistic demo data, written as landing files for the ingest stage.

The churn generator injects on purpose what real exports contain: missing values, outliers,
invalid rows (negative tenure, missing key) and duplicate customers with an older update.

The forecast generator writes daily store x item sales with a trend, weekly and yearly
seasonality, holidays, week-long promotions, missing days (every store closed on 12-25, and 2% of
the rest) and older duplicates. A day's values depend only on the seed, the series and the day,
so a day is the same whether it lands as history or on its own run date.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prescore.config import Settings, UseCase
from prescore.data import sources

CHUNK_ROWS = 1_000_000
_FIRST = ["Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jon"]
_LAST = ["Smith", "Garcia", "Muller", "Rossi", "Novak", "Kim", "Silva", "Dubois", "Olsen", "Khan"]


def _pick(rng: np.random.Generator, levels: list[str], p: list[float], n: int) -> np.ndarray:
    return rng.choice(np.array(levels, dtype=object), size=n, p=p)


def churn_customers(start: int, n: int, run_date: date, rng: np.random.Generator) -> pd.DataFrame:
    """One row per customer (ids start..start+n-1), with PII, features and the churned label."""
    ids = np.arange(start, start + n)
    tenure = rng.gamma(2.0, 14.0, n).astype(np.int32)
    plan = _pick(rng, ["basic", "standard", "premium"], [0.5, 0.35, 0.15], n)
    base_fee = np.select([plan == "basic", plan == "standard"], [25.0, 55.0], 95.0)
    monthly = np.round(base_fee + rng.normal(0, 8, n), 2)
    contract = _pick(rng, ["monthly", "annual", "two_year"], [0.55, 0.3, 0.15], n)
    support = rng.poisson(1.2, n).astype(np.int32)
    last_login = rng.exponential(12, n).astype(np.int32)
    products = rng.integers(1, 5, n).astype(np.int32)
    logit = (
        -1.2
        - 0.035 * tenure
        + 0.45 * support
        + 0.04 * last_login
        + 0.012 * (monthly - 50)
        + np.where(contract == "monthly", 1.1, np.where(contract == "annual", -0.3, -1.2))
        - 0.25 * products
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    first, last = rng.choice(_FIRST, n), rng.choice(_LAST, n)
    run_start = datetime.combine(run_date, datetime.min.time())
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:08d}" for i in ids],
            "name": [f"{a} {b}" for a, b in zip(first, last, strict=True)],
            "email": [
                f"{a.lower()}.{b.lower()}{i}@example.com"
                for a, b, i in zip(first, last, ids, strict=True)
            ],
            "phone": [f"+1-555-{i % 10_000_000:07d}" for i in ids],
            "signup_date": [run_date - timedelta(days=int(30.4 * t) + 1) for t in tenure],
            "updated_at": run_start - pd.to_timedelta(rng.integers(1, 86_400, n), unit="s"),
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": np.round(monthly * np.maximum(tenure, 1), 2),
            "support_calls": support,
            "data_usage_gb": np.round(rng.lognormal(3.0, 0.8, n), 2),
            "num_products": products,
            "last_login_days": last_login,
            "plan": plan,
            "region": _pick(rng, ["north", "south", "east", "west"], [0.3, 0.25, 0.25, 0.2], n),
            "payment_method": _pick(
                rng, ["card", "bank_transfer", "paypal", "invoice"], [0.4, 0.3, 0.2, 0.1], n
            ),
            "contract": contract,
            "churned": churned,
        }
    )


def inject_defects(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Missing values, outliers, invalid rows and older duplicates, at fixed small rates."""
    df = df.copy()
    n = len(df)

    def some(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    df.loc[some(0.03), "monthly_charges"] = np.nan
    df.loc[some(0.02), "data_usage_gb"] = np.nan
    df.loc[some(0.02), "plan"] = None
    df["support_calls"] = df["support_calls"].astype("Int32")  # nullable, stays int in Parquet
    df.loc[some(0.02), "support_calls"] = pd.NA
    df.loc[some(0.005), "monthly_charges"] = 5000.0  # outliers, clipped by the clean stage
    df.loc[some(0.004), "tenure_months"] = -5  # invalid, quarantined
    df.loc[some(0.002), "customer_id"] = None  # invalid, quarantined
    duplicates = df[some(0.02)].copy()
    duplicates["updated_at"] = duplicates["updated_at"] - pd.Timedelta(days=3)
    duplicates["monthly_charges"] = duplicates["monthly_charges"] + 1.0
    return pd.concat([df, duplicates], ignore_index=True)


def churn_chunks(
    rows: int, run_date: date, seed: int, history_days: int = 0
) -> Iterator[pd.DataFrame]:
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, index])
        n = min(CHUNK_ROWS, rows - start)
        yield inject_defects(churn_customers(start, n, run_date, rng), rng)


ITEMS_PER_STORE = 10
SALES_HOLIDAYS = ("01-01", "05-01", "07-04", "11-27", "12-24", "12-25", "12-31")  # forecast.yaml
_WEEKLY = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.35, 1.25])  # Monday .. Sunday


def sales_series(series: int, seed: int) -> pd.DataFrame:
    """store_id, item_id and each series' base level, from the seed alone."""
    rng = np.random.default_rng([seed, 0])
    index = np.arange(series)
    store, item = index // ITEMS_PER_STORE, index % ITEMS_PER_STORE
    store_size = rng.uniform(0.6, 1.6, store.max() + 1)
    item_demand = rng.gamma(3.0, 6.0, ITEMS_PER_STORE)
    return pd.DataFrame(
        {
            "store_id": [f"S{s:03d}" for s in store],
            "item_id": [f"I{i:03d}" for i in item],
            "level": store_size[store] * item_demand[item],
        }
    )


def sales_day(series: pd.DataFrame, day: date, seed: int) -> pd.DataFrame:
    """Every series' row of one day, minus its missing ones, plus older duplicates."""
    rng = np.random.default_rng([seed, day.toordinal()])
    week = np.random.default_rng([seed, 1, day.toordinal() - day.weekday()])  # same all week
    n = len(series)
    promo = (week.random(n) < 0.12).astype(np.int32)
    holiday = day.strftime("%m-%d") in SALES_HOLIDAYS
    mean = (
        series["level"].to_numpy()
        * (1 + 0.0008 * (day - date(2024, 1, 1)).days)  # slow growth
        * _WEEKLY[day.weekday()]
        * (1 + 0.25 * np.sin(2 * np.pi * (day.timetuple().tm_yday - 80) / 365.25))
        * (1.6 if holiday else 1.0)
        * np.where(promo == 1, 1.5, 1.0)
    )
    end = datetime.combine(day + timedelta(days=1), datetime.min.time())
    frame = pd.DataFrame(
        {
            "store_id": series["store_id"],
            "item_id": series["item_id"],
            "date": day,
            "updated_at": end + pd.to_timedelta(rng.integers(60, 7_200, n), unit="s"),
            "sales": rng.poisson(mean).astype(np.int32),
            "promo": promo,
        }
    )
    observed = rng.random(n) >= 0.02
    if day.strftime("%m-%d") == "12-25":  # every store closed
        observed[:] = False
    frame = frame[observed]
    older = frame[rng.random(len(frame)) < 0.01].copy()  # a first export, corrected later
    older["updated_at"] = older["updated_at"] - pd.Timedelta(hours=1)
    older["sales"] = older["sales"] + 3
    return pd.concat([frame, older], ignore_index=True)


def sales_chunks(
    rows: int, run_date: date, seed: int, history_days: int = 0
) -> Iterator[pd.DataFrame]:
    """`rows` series (ITEMS_PER_STORE items a store): the sales of run_date and of the
    `history_days` days before it, one chunk per day."""
    series = sales_series(rows, seed)
    for back in range(history_days, -1, -1):
        day_frame = sales_day(series, run_date - timedelta(days=back), seed)
        if len(day_frame):
            yield day_frame


GENERATORS: dict[str, Callable[[int, date, int, int], Iterator[pd.DataFrame]]] = {
    "churn": churn_chunks,
    "forecast": sales_chunks,
}


def landing_dir(settings: Settings, usecase: UseCase, run_date: date) -> Path:
    """The folder the use case's landing files of `run_date` are written to (and ingested from)."""
    return sources.landing_dir(settings, usecase.source, run_date)


def write_landing(
    settings: Settings,
    usecase: UseCase,
    run_date: date,
    rows: int,
    seed: int = 42,
    *,
    history_days: int = 0,
) -> Path:
    """Write `rows` generated rows (for a forecast: series) as Parquet landing files for run_date;
    replaces earlier files. A time series also lands the `history_days` days before run_date
    (a first run needs them for its lags and its training labels)."""
    if history_days and usecase.time_series is None:
        raise ValueError(f"history_days applies to time-series use cases, not {usecase.name!r}")
    if usecase.name not in GENERATORS:
        raise ValueError(f"no demo data generator for use case {usecase.name!r}")
    if usecase.source.format != "parquet":
        raise ValueError(
            f"the demo generator writes parquet, {usecase.name} reads {usecase.source.format}"
        )
    target = landing_dir(settings, usecase, run_date)
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.parquet"):
        old.unlink()
    generate = GENERATORS[usecase.name]
    chunks = generate(rows, run_date, seed, history_days)
    for index, chunk in enumerate(_concatenated(chunks, CHUNK_ROWS)):
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        # Spark reads microsecond timestamps; pandas holds nanoseconds.
        with (target / f"part-{index:05d}.parquet").open("wb") as out:  # local or on the store
            pq.write_table(table, out, coerce_timestamps="us")
    return target


def _concatenated(chunks: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Small chunks joined up to about `rows` rows each: fewer, larger landing files."""
    pending: list[pd.DataFrame] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= rows:
            yield pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            pending, held = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
