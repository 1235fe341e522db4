"""Seeded generators of realistic demo data, written as landing files for the ingest stage.

The churn generator injects on purpose what real exports contain: missing values, outliers,
invalid rows (negative tenure, missing key) and duplicate customers with an older update.
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


def churn_chunks(rows: int, run_date: date, seed: int) -> Iterator[pd.DataFrame]:
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        rng = np.random.default_rng([seed, index])
        n = min(CHUNK_ROWS, rows - start)
        yield inject_defects(churn_customers(start, n, run_date, rng), rng)


GENERATORS: dict[str, Callable[[int, date, int], Iterator[pd.DataFrame]]] = {
    "churn": churn_chunks,
}


def landing_dir(settings: Settings, usecase: UseCase, run_date: date) -> Path:
    root = Path(usecase.source.path)
    root = root if root.is_absolute() else settings.landing_dir / root
    return root / f"run_date={run_date.isoformat()}"


def write_landing(
    settings: Settings, usecase: UseCase, run_date: date, rows: int, seed: int = 42
) -> Path:
    """Write `rows` generated rows as Parquet landing files for run_date; replaces earlier files."""
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
    for index, chunk in enumerate(GENERATORS[usecase.name](rows, run_date, seed)):
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        # Spark reads microsecond timestamps; pandas holds nanoseconds.
        pq.write_table(table, target / f"part-{index:05d}.parquet", coerce_timestamps="us")
    return target
