"""The monitor stage on real Spark, Delta and MLflow, on copies of the session's whole-flow state
(day 1 trained and published): day 2's landing files are day 1's customers, unchanged or with a
shift injected, run through to publish and monitor, with the alert webhook a local HTTP server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from prescore.context import RunContext
from prescore.demo.datagen import landing_dir
from prescore.flow import run_flow
from prescore.monitoring import measures, metrics
from prescore.monitoring import report as monitor_report
from prescore.platform import tables
from prescore.serving import bi
from support import copy_of_flow, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAY_TWO = ("ingest", "validate", "clean", "score", "publish", "monitor")
SHIFTED = "monthly_charges"


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_server() as server:
        yield server


def day_two(flow: tuple[RunContext, Any], folder: Path, url: str) -> RunContext:
    """The flow's state copied to `folder`; a context for the next day that alerts to `url` and
    publishes whatever the scores (the publish drift gate is not what is tested here)."""
    ctx = copy_of_flow(flow, folder, days_later=1)
    airflow = ctx.settings.airflow.model_copy(update={"alert_webhook_url": url})
    settings = ctx.settings.model_copy(update={"airflow": airflow})
    usecase = ctx.usecase.model_copy(
        update={"publish": ctx.usecase.publish.model_copy(update={"max_psi": 100.0})}
    )
    return RunContext(settings, usecase, ctx.run_date, ctx.spark)


def land_day_two(ctx: RunContext, change: Any = None) -> None:
    """Day 1's landing rows (its injected defects too, so the null rates stay the same), changed
    by `change`, as day 2's landing."""
    frame = pd.read_parquet(landing_dir(ctx.settings, ctx.usecase, ctx.run_date - timedelta(1)))
    if change is not None:
        frame = change(frame)
    folder = landing_dir(ctx.settings, ctx.usecase, ctx.run_date)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, folder / "part-0.parquet", coerce_timestamps="us")


def stored(spark: SparkSession, ctx: RunContext) -> dict[tuple[str, str | None], Any]:
    rows = tables.read_run(spark, ctx.settings, ctx.usecase.monitoring_table, ctx.run_date)
    return {(r.metric, r.feature): r for r in rows.collect()}


def run_day_two(
    flow: tuple[RunContext, Any],
    folder: Path,
    webhook: tuple[str, list[dict[str, Any]]],
    change: Any = None,
) -> tuple[RunContext, dict[str, Any], list[dict[str, Any]]]:
    """(context, stage summaries, alerts received during the run)."""
    url, received = webhook
    ctx = day_two(flow, folder, url)
    land_day_two(ctx, change)
    before = len(received)
    summary = run_flow(ctx, DAY_TWO)
    return ctx, summary, [post["body"] for post in received[before:]]


@pytest.fixture(scope="module")
def shifted(
    flow: tuple[RunContext, Any],
    webhook: tuple[str, list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RunContext, dict[str, Any], list[dict[str, Any]]]:
    """Day 2 with every monthly charge 1.8 times day 1's."""

    def more_expensive(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{SHIFTED: frame[SHIFTED] * 1.8})

    folder = tmp_path_factory.mktemp("shifted") / "state"
    return run_day_two(flow, folder, webhook, more_expensive)


@pytest.fixture(scope="module")
def unchanged(
    flow: tuple[RunContext, Any],
    webhook: tuple[str, list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RunContext, dict[str, Any], list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("unchanged") / "state"
    return run_day_two(flow, folder, webhook)


def test_first_publish_is_monitored_without_a_previous_one(
    spark: SparkSession, flow: tuple[RunContext, Any]
) -> None:
    """Day 1 of the session flow: feature drift against its own training rows is low; prediction
    drift and realized performance are stored as not measured, with the reason."""
    ctx, summary = flow
    assert summary["monitor"]["breaches"] == []
    rows = stored(spark, ctx)
    assert rows[("prediction_psi", None)].value is None
    assert "no earlier run date" in rows[("prediction_psi", None)].detail
    assert rows[("realized_auc", None)].value is None
    assert rows[("realized_auc", None)].detail.startswith("not measured: no outcomes yet")
    features = {f for metric, f in rows if metric == "feature_psi"}
    assert features == set(ctx.usecase.features)
    assert {f for metric, f in rows if metric == "feature_ks"} == set(ctx.usecase.numeric_features)
    unseen = {f: r for (metric, f), r in rows.items() if metric == "unseen_levels"}
    assert set(unseen) == set(ctx.usecase.categorical_features)  # the demo's levels are all known
    assert all(r.value == 0 and not r.breached for r in unseen.values())


def test_a_shifted_feature_is_stored_as_breached_and_alerted(
    spark: SparkSession, shifted: tuple[RunContext, dict[str, Any], list[dict[str, Any]]]
) -> None:
    ctx, summary, alerts = shifted
    rows = stored(spark, ctx)
    psi, ks = rows[("feature_psi", SHIFTED)], rows[("feature_ks", SHIFTED)]
    assert psi.breached and psi.value > ctx.usecase.monitoring.max_feature_psi
    assert ks.breached and ks.value > ctx.usecase.monitoring.max_ks
    # Only the shifted feature (and the scores it moves) crossed a threshold.
    breached = {(r.metric, r.feature) for r in rows.values() if r.breached}
    assert breached - {("prediction_psi", None), ("realized_auc", None)} == {
        ("feature_psi", SHIFTED),
        ("feature_ks", SHIFTED),
    }
    assert summary["monitor"]["alerted"] is True
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["event"] == "prescore_monitoring_breach"
    assert (alert["usecase"], alert["run_date"]) == (ctx.usecase.name, ctx.run_date.isoformat())
    named = {(b["metric"], b["feature"]) for b in alert["breaches"]}
    assert {("feature_psi", SHIFTED), ("feature_ks", SHIFTED)} <= named


def test_the_report_is_html_with_its_plots_embedded(
    shifted: tuple[RunContext, dict[str, Any], list[dict[str, Any]]],
) -> None:
    ctx, summary, _ = shifted
    report = Path(summary["monitor"]["report"])
    assert report.parent == ctx.settings.reports_dir / ctx.usecase.name
    html = report.read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    titles = [title for title, _ in images]
    assert titles == [
        "Feature drift: PSI per feature",
        "Feature drift: KS per numeric feature",
        "Prediction drift",
        "Realized performance over time",
    ]
    for _, data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert f"<b>feature_psi ({SHIFTED})</b>" in html


def test_bi_views_show_the_latest_measures_and_the_alerts(
    shifted: tuple[RunContext, dict[str, Any], list[dict[str, Any]]], tmp_path: Path
) -> None:
    ctx, summary, _ = shifted
    path = tmp_path / "bi.duckdb"
    made = bi.build_bi_views(ctx.settings, ctx.usecase, path)
    assert {"monitoring_latest", "monitoring_alerts"} <= set(made["created"])
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(bi.load_statement(ctx.settings))
        latest = con.execute("select distinct run_date from monitoring_latest").fetchall()
        alerts = con.execute(
            "select run_date, metric, feature from monitoring_alerts where feature is not null"
        ).fetchall()
        rows = con.execute("select count(*) from monitoring_latest").fetchone()
    assert latest == [(ctx.run_date,)]
    assert rows == (summary["monitor"]["measures"],)
    assert sorted(alerts) == [
        (ctx.run_date, "feature_ks", SHIFTED),
        (ctx.run_date, "feature_psi", SHIFTED),
    ]


def test_an_unchanged_day_alerts_nothing(
    spark: SparkSession, unchanged: tuple[RunContext, dict[str, Any], list[dict[str, Any]]]
) -> None:
    ctx, summary, alerts = unchanged
    assert summary["monitor"]["breaches"] == []
    assert alerts == []
    rows = stored(spark, ctx)
    assert all(not r.breached for r in rows.values())
    psi = [r.value for (metric, _), r in rows.items() if metric == "feature_psi"]
    assert max(psi) < 0.1
    assert rows[("prediction_psi", None)].value < 0.1


def test_realized_auc_joins_day_one_predictions_with_day_two_labels(
    spark: SparkSession, unchanged: tuple[RunContext, dict[str, Any], list[dict[str, Any]]]
) -> None:
    """The stored AUC is the AUC of day 1's published scores against the labels day 2 brought,
    by key, as sklearn computes it on the same pairs."""
    ctx, _, _ = unchanged
    usecase = ctx.usecase
    found = stored(spark, ctx)[("realized_auc", None)]
    day_one = ctx.run_date - timedelta(days=1)
    predictions = tables.read_run(spark, ctx.settings, usecase.predictions_table, day_one)
    labels = tables.read_run(spark, ctx.settings, usecase.clean_table, ctx.run_date)
    pairs = (
        predictions.join(labels.where(F.col(usecase.label).isNotNull()), "customer_id")
        .select("score", usecase.label)
        .toPandas()
    )
    assert found.current_rows == len(pairs) > 500
    assert found.value == pytest.approx(
        roc_auc_score(pairs[usecase.label], pairs["score"]), abs=1e-3
    )
    assert not found.breached and found.threshold == usecase.monitoring.min_auc
    assert f"published run_date {day_one}" in found.compared


def test_rerunning_monitor_replaces_the_run_dates_rows(
    spark: SparkSession, unchanged: tuple[RunContext, dict[str, Any], list[dict[str, Any]]]
) -> None:
    ctx, summary, _ = unchanged
    run_flow(ctx, ("monitor",))
    table = ctx.usecase.monitoring_table
    rows = tables.read_run(spark, ctx.settings, table, ctx.run_date)
    assert rows.count() == summary["monitor"]["measures"]
    assert rows.select("metric", "feature").distinct().count() == rows.count()


def test_flipped_labels_breach_realized_auc(
    spark: SparkSession,
    flow: tuple[RunContext, Any],
    webhook: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """Day 2 brings the opposite of every label: day 1's scores, realized, fall under min_auc."""

    def flipped(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(churned=1 - frame["churned"])

    ctx, _, alerts = run_day_two(flow, tmp_path / "state", webhook, flipped)
    found = stored(spark, ctx)[("realized_auc", None)]
    assert found.breached and found.value < 0.5
    assert [b for b in alerts[0]["breaches"] if b["metric"] == "realized_auc"]


# ---------------------------------------------------------------- pieces, on small frames


def test_binned_ks_is_within_one_bin_of_the_exact_statistic(spark: SparkSession) -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 4000), rng.normal(0.3, 1.2, 3000)
    reference = spark.createDataFrame(pd.DataFrame({"x": ref}))
    current = spark.createDataFrame(pd.DataFrame({"x": cur}))
    (found,) = metrics.feature_drift(
        reference, current, numeric=["x"], categorical={}, psi_bins=10, ks_bins=100
    )
    exact = ks_2samp(ref, cur).statistic
    assert exact - 1 / 100 - 0.002 <= found.ks <= exact + 1e-9
    assert found.psi > 0.1


def test_missing_values_and_unknown_levels_are_a_bin_of_their_own(spark: SparkSession) -> None:
    """Nulls rising from 0% to 50% is drift, for a numeric and a categorical feature alike; a
    value outside the model's levels is binned as missing, and counted apart."""
    levels = ["a", "b", "c"]
    reference = spark.createDataFrame(
        [(float(i % 10), levels[i % 3]) for i in range(1000)], "x double, c string"
    )
    current = spark.createDataFrame(
        [
            (None, None) if i % 2 else (float(i // 2 % 10), "zz" if i % 10 == 0 else levels[i % 3])
            for i in range(1000)
        ],
        "x double, c string",
    )
    found = metrics.feature_drift(
        reference,
        current,
        numeric=["x"],
        categorical={"c": levels},
        psi_bins=10,
        ks_bins=20,
    )
    assert [f.feature for f in found] == ["x", "c"]
    assert all(f.psi > 1.0 for f in found)
    assert (found[0].unseen, found[1].unseen) == (None, 100)
    assert found[0].ks == pytest.approx(0.0, abs=0.05)  # KS leaves missing values out


def test_time_series_outcomes_join_on_key_and_target_date(spark: SparkSession) -> None:
    """The contract for a forecasting use case: predictions (keys, target_date, horizon, score)
    meet the clean rows whose date column is the day predicted."""
    usecase = SimpleNamespace(
        keys=["store"],
        label="sales",
        time_series=SimpleNamespace(date_column="day", horizon_days=7),
    )
    predictions = spark.createDataFrame(
        [
            ("s1", date(2026, 11, 2), 1, 10.0),
            ("s1", date(2026, 11, 3), 2, 11.0),
            ("s2", date(2026, 11, 2), 1, 20.0),
        ],
        "store string, target_date date, horizon int, score double",
    )
    labels = spark.createDataFrame(
        [
            ("s1", date(2026, 11, 2), 12.0),
            ("s2", date(2026, 11, 2), None),
            ("s2", date(2026, 11, 1), 5.0),
        ],
        "store string, day date, sales double",
    )
    joined = measures.outcomes(predictions, labels, usecase=usecase).collect()  # type: ignore[arg-type]
    assert [(r.store, r.target_date, r.score, r.sales) for r in joined] == [
        ("s1", date(2026, 11, 2), 10.0, 12.0)
    ]
    found = metrics.regression_outcomes(
        measures.outcomes(predictions, labels, usecase=usecase),
        label="sales",
        score="score",  # type: ignore[arg-type]
    )
    assert found == pytest.approx({"rmse": 2.0, "mae": 2.0, "mape": 2.0 / 12.0})


def test_evidently_page_is_written_offline_on_a_bounded_sample(
    spark: SparkSession, churn: Any, tmp_path: Path
) -> None:
    """Evidently's data-drift page, from at most report_sample_rows rows a
    side, loads nothing from the network (no script src, no stylesheet link)."""
    rows = [(float(i % 97), float(i % 13), i % 3) for i in range(3000)]
    shifted = [(x * 2, y, c) for x, y, c in rows]
    schema = "tenure_months double, support_calls double, plan int"
    usecase = churn.model_copy(
        update={
            "numeric_features": ["tenure_months", "support_calls"],
            "categorical_features": {"plan": ["basic", "standard", "premium"]},
            "monitoring": churn.monitoring.model_copy(update={"report_sample_rows": 500}),
        }
    )
    frames = {
        "reference": spark.createDataFrame(rows, schema),
        "current": spark.createDataFrame(shifted, schema),
    }
    page = monitor_report.evidently_page(usecase, frames, tmp_path / "evidently.html")
    assert page is not None
    html = page.read_text()
    assert "tenure_months" in html
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http", html)
