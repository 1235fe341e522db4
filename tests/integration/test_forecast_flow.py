"""The forecast use case through every stage in-process, on a fresh state folder: 20 store-item
series with 60 days of history, then the next day's data alone; forecasts are looked up by
(store, item, target_date) through the Python client and the HTTP service."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
from pyspark.sql import SparkSession

from prescore.config import TARGET_DATE, Settings, UseCase, load_usecase
from prescore.context import RunContext
from prescore.demo.datagen import write_landing
from prescore.flow import run_flow, run_stage
from prescore.platform import registry, tables
from prescore.scoring.population import rows_to_score
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from support import running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D1 = date(2026, 11, 1)
D2 = D1 + timedelta(days=1)
SERIES, HISTORY_DAYS = 20, 59


@pytest.fixture(scope="module")
def forecast_flow(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, UseCase, dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    """D1 with its history through every stage, then D2's day alone through the score flow and
    the monitor (D1's next-day forecasts meet D2's actuals)."""
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("forecast")})
    usecase = load_usecase("forecast", state)
    write_landing(state, usecase, D1, rows=SERIES, history_days=HISTORY_DAYS)
    first = run_flow(RunContext(state, usecase, D1, spark))
    write_landing(state, usecase, D2, rows=SERIES)
    score_stages = ("ingest", "validate", "clean", "score", "publish", "monitor")
    second = run_flow(RunContext(state, usecase, D2, spark), score_stages)
    return state, usecase, first, second


def test_the_flow_trains_a_regression_with_test_metrics(forecast_flow) -> None:  # type: ignore[no-untyped-def]
    _, _, first, _ = forecast_flow
    train = first["train"]
    assert train["promoted"] is True
    assert 0 < train["mae"] <= train["rmse"]
    assert first["clean"]["quarantined_duplicates"] > 0  # the generator's older duplicates


def test_predictions_hold_one_row_per_series_and_horizon(
    forecast_flow,  # type: ignore[no-untyped-def]
    spark: SparkSession,
) -> None:
    state, usecase, _, second = forecast_flow
    predictions = tables.read_run(spark, state, usecase.predictions_table, D2)
    types = dict(predictions.dtypes)
    assert (types[TARGET_DATE], types["horizon"]) == ("date", "int")
    rows = predictions.select("store_id", "item_id", TARGET_DATE, "horizon", "score").collect()
    assert len(rows) == SERIES * 7 == second["publish"]["rows"]
    assert {r[TARGET_DATE] - D2 for r in rows} == {timedelta(days=h) for h in range(1, 8)}
    assert all(r[TARGET_DATE] == D2 + timedelta(days=r["horizon"]) for r in rows)
    assert len({(r["store_id"], r["item_id"], r[TARGET_DATE]) for r in rows}) == len(rows)
    assert all(r["score"] > 0 for r in rows)


def test_the_registered_pyfunc_forecasts_the_scored_rows_to_the_same_numbers(
    forecast_flow,  # type: ignore[no-untyped-def]
    spark: SparkSession,
) -> None:
    """The champion, loaded as any MLflow model, on the rows the score stage scored (the origin
    day's features and lags, one row per series and horizon) gives the stored forecasts."""
    state, usecase, _, _ = forecast_flow
    champion = registry.resolve_alias(state, usecase)
    version = tables.latest_version(state, usecase.clean_table)
    rows = rows_to_score(spark, state, usecase, D2, version).toPandas()
    predictions = tables.read_run(spark, state, usecase.predictions_table, D2).toPandas()
    keys = usecase.published_keys
    joined = rows.merge(predictions[[*keys, "score"]], on=keys, validate="one_to_one")
    assert len(joined) == SERIES * 7

    local = mlflow.pyfunc.load_model(champion.uri).predict(joined[usecase.features])

    np.testing.assert_allclose(local, joined["score"], rtol=0, atol=1e-6)


def test_a_lookup_by_store_item_and_target_date_answers_each_of_the_next_days(
    forecast_flow,  # type: ignore[no-untyped-def]
) -> None:
    state, usecase, _, _ = forecast_flow
    client = Scores(usecase, state)
    try:
        keys = [("S000", "I003", D2 + timedelta(days=h)) for h in range(1, 8)]
        answers = client.get_many(keys)
        assert [a.key[2] for a in answers] == [k[2].isoformat() for k in keys]
        assert all(a.score is not None and a.run_date == D2 for a in answers)
        assert "missing" not in {a.freshness for a in answers}
        one = client.get(("S000", "I003", (D2 + timedelta(days=3)).isoformat()))
        assert one.score == answers[2].score
        assert client.get(("S000", "I003", D2)).freshness == "missing"  # the origin: no forecast
    finally:
        client.close()
    with running(create_app(state, [usecase])) as http:
        target = (D2 + timedelta(days=7)).isoformat()
        answer = http.get(f"/v1/forecast/scores/S000,I003,{target}")
        assert answer.status_code == 200
        body = answer.json()
        assert body["key"] == {"store_id": "S000", "item_id": "I003", TARGET_DATE: target}
        assert body["score"] == answers[6].score


def test_scoring_a_run_date_never_cleaned_is_refused(
    forecast_flow,  # type: ignore[no-untyped-def]
    spark: SparkSession,
) -> None:
    """The history alone would give forecasts; without the run date's data they would be stale."""
    state, usecase, _, _ = forecast_flow
    later = D2 + timedelta(days=1)
    with pytest.raises(
        tables.TableNotFoundError, match=f"'clean_sales' has no rows for run_date {later}"
    ):
        run_stage("score", RunContext(state, usecase, later, spark))


def test_the_analyst_notebook_runs_on_the_published_forecasts(
    forecast_flow,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """notebooks/forecast.ipynb executed top to bottom: D1's forecast of D2 is its backtest."""
    import nbformat
    from nbclient import NotebookClient

    state, _, _, _ = forecast_flow
    monkeypatch.setenv("PRESCORE_STATE_DIR", str(state.state_dir))
    monkeypatch.setenv("PRESCORE_ENV", "test")
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root / "src"))
    notebook = nbformat.read(root / "notebooks" / "forecast.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, resources={"metadata": {"path": str(root)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the two figures
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"backtest: {SERIES} forecasts" in printed  # D1 horizon 1: seed 42 observes all 20 on D2


def test_the_monitor_measures_yesterdays_forecasts_against_todays_actuals(
    forecast_flow,  # type: ignore[no-untyped-def]
    spark: SparkSession,
) -> None:
    """D2's monitor joins D1's forecasts to D2's sales on (store, item, target_date): the 20
    next-day forecasts, with RMSE, MAE and MAPE measured and the same MAE the rows give; the
    report and its Evidently page are written."""
    state, usecase, _, second = forecast_flow
    assert second["monitor"]["table"] == "monitoring_forecast"
    report = Path(str(second["monitor"]["report"]))
    assert report.is_file() and report.with_name(f"{report.stem}_evidently.html").is_file()
    measures = {
        r["metric"]: r
        for r in tables.read_run(spark, state, "monitoring_forecast", D2).collect()
        if r["metric"].startswith("realized_")
    }
    assert set(measures) == {"realized_rmse", "realized_mae", "realized_mape"}
    assert all(m["value"] is not None for m in measures.values()), measures
    assert measures["realized_mae"]["current_rows"] == SERIES
    forecasts = tables.read_run(spark, state, usecase.predictions_table, D1).where(
        f"{TARGET_DATE} = date'{D2}'"
    )
    actuals = tables.read_run(spark, state, usecase.clean_table, D2).selectExpr(
        "store_id", "item_id", f"date as {TARGET_DATE}", "sales"
    )
    errors = [
        abs(r["score"] - r["sales"])
        for r in forecasts.join(actuals, ["store_id", "item_id", TARGET_DATE]).collect()
    ]
    assert len(errors) == SERIES
    assert measures["realized_mae"]["value"] == pytest.approx(sum(errors) / len(errors))
