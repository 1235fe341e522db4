"""The whole flow on 1k generated rows, in one Spark session: what make demo does, minus Airflow."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import duckdb
import mlflow.pyfunc
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prescore.catalog import SCORE
from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.demo.datagen import landing_dir
from prescore.flow import run_flow
from prescore.platform import registry, tables
from prescore.scoring.predict import score_frame, scorer
from prescore.serving.client import Scores
from prescore.serving.http import create_app
from prescore.training.pyfunc import load_preprocessing
from support import FLOW_LOG, FLOW_RUN_DATE, copy_of_flow, mlflow_model_server, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RUN_DATE = FLOW_RUN_DATE


def _keys(spark: SparkSession, ctx: RunContext, table: str) -> tuple[int, int]:
    df = tables.read_run(spark, ctx.settings, table, RUN_DATE)
    return df.count(), df.select(*ctx.usecase.keys).distinct().count()


def test_every_raw_row_is_clean_or_quarantined(spark: SparkSession, flow) -> None:
    ctx, summary = flow
    raw, _ = _keys(spark, ctx, ctx.usecase.raw_table)
    clean, clean_keys = _keys(spark, ctx, ctx.usecase.clean_table)
    quarantined = tables.read_run(
        spark, ctx.settings, ctx.usecase.quarantine_table, RUN_DATE
    ).count()
    assert raw > 1000  # the generator adds duplicates on top of the 1000 customers
    assert clean + quarantined == raw
    assert clean == clean_keys
    assert (
        summary["clean"]["quarantined_invalid"] > 0
        and summary["clean"]["quarantined_duplicates"] > 0
    )


def test_looked_up_score_equals_the_registered_models_prediction(spark: SparkSession, flow) -> None:
    """The registered version, loaded as any MLflow model is, scores the clean rows (missing
    values, text levels and all) to the number served for their keys."""
    ctx, _ = flow
    champion = registry.resolve_alias(ctx.settings, ctx.usecase)
    model = mlflow.pyfunc.load_model(champion.uri)
    clean = tables.read_run(spark, ctx.settings, ctx.usecase.clean_table, RUN_DATE)
    rows = clean.orderBy("customer_id").limit(20).toPandas()
    assert rows[ctx.usecase.features].isna().any().any()  # the model fills what clean left missing
    expected = model.predict(rows[ctx.usecase.features])
    scores = Scores(ctx.usecase, ctx.settings)
    for key, score in zip(rows["customer_id"], expected, strict=True):
        found = scores.get(key)
        assert found.score == pytest.approx(float(score), abs=1e-6)
        assert found.model_version == champion.version
        assert found.model_name == champion.name


def damaged(rows: pd.DataFrame, usecase: UseCase) -> pd.DataFrame:
    """Clean rows with what a later day brings: every 7th numeric value missing, every 11th a
    thousand times too large, every 13th categorical value a level the model never saw."""
    rows = rows.copy()
    index = np.arange(len(rows))
    for column in usecase.numeric_features:
        values = rows[column].astype("float64")
        values[index % 11 == 3] *= 1000
        values[index % 7 == 0] = np.nan
        rows[column] = values
    for column in usecase.categorical_features:
        rows[column] = rows[column].where(index % 13 != 5, "never-seen")
    return rows


def test_one_number_from_batch_pyfunc_and_mlflow_serve(spark: SparkSession, flow) -> None:
    """1,000 rows of the run date with missing values, outliers and unseen levels: the score
    stage's Spark scoring, the registered pyfunc on the raw rows and `mlflow models serve` over
    HTTP give the same score to 1e-6, because the model version carries its preprocessing."""
    ctx, _ = flow
    usecase, settings = ctx.usecase, ctx.settings
    champion = registry.resolve_alias(settings, usecase)
    clean = tables.read_run(spark, settings, usecase.clean_table, RUN_DATE)
    columns = clean.select(*usecase.keys, *usecase.features)
    half = columns.orderBy(*usecase.keys).limit(500).toPandas()
    again = half.assign(customer_id=half["customer_id"] + "-b")  # damaged differently below
    rows = damaged(pd.concat([half, again], ignore_index=True), usecase)

    frame = spark.createDataFrame(rows.astype(object).where(rows.notna(), None), columns.schema)
    model = scorer(spark, key=champion.uri, package=registry.load_package(champion))
    batch = score_frame(frame, model=model, usecase=usecase).toPandas()
    batch = rows[usecase.keys].merge(batch, on=usecase.keys, how="left")[SCORE].to_numpy()
    model.parts.unpersist()

    features = rows[usecase.features]
    local = mlflow.pyfunc.load_model(champion.uri).predict(features)
    records = features.astype(object).where(features.notna(), None)
    body = {"dataframe_split": records.to_dict(orient="split", index=False)}
    with mlflow_model_server(champion.uri, settings) as http:
        answer = http.post("/invocations", json=body)
    assert answer.status_code == 200, answer.text
    served = np.asarray(answer.json()["predictions"], dtype=np.float64)

    np.testing.assert_allclose(local, batch, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served, batch, rtol=0, atol=1e-6)
    assert len(np.unique(np.round(batch, 6))) > 100  # real scores, not one constant


def test_keys_not_precomputed_are_computed_from_their_features_over_http(
    spark: SparkSession, flow
) -> None:
    """scores:compute gives the precomputed score of a key from its clean features; a batch
    with features serves the keys found and computes the others; PII, a missing feature and
    text in a numeric feature are 422s naming the column."""
    ctx, _ = flow
    usecase, settings = ctx.usecase, ctx.settings
    clean = tables.read_run(spark, settings, usecase.clean_table, RUN_DATE)
    rows = clean.select(*usecase.keys, *usecase.features).orderBy(*usecase.keys).limit(50)
    records = json.loads(rows.toPandas().to_json(orient="records"))
    keys = [r["customer_id"] for r in records]
    precomputed = [s.score for s in Scores(usecase, settings).get_many(keys)]
    features = [{f: r[f] for f in usecase.features} for r in records]

    with running(create_app(settings, [usecase])) as http:
        computed = http.post("/v1/churn/scores:compute", json={"rows": records})
        keyless = http.post("/v1/churn/scores:compute", json={"rows": features[:2]})
        new_keys = [f"NEW-{i}" for i in range(5)]
        batch = http.post(
            "/v1/churn/scores:batch",
            json={"keys": [*keys, *new_keys], "features": [*features, *features[:5]]},
        )
        refused = {
            "email": {**features[0], "email": "someone@example.com"},
            "tenure_months": {f: v for f, v in features[0].items() if f != "tenure_months"},
            "monthly_charges": {**features[0], "monthly_charges": "a lot"},
        }
        refusals = {
            c: http.post("/v1/churn/scores:compute", json={"rows": [row]})
            for c, row in refused.items()
        }

    assert computed.status_code == 200, computed.text
    answers = computed.json()["scores"]
    assert [a["key"] for a in answers] == [{"customer_id": k} for k in keys]
    assert {(a["source"], a["freshness"]) for a in answers} == {("computed", None)}
    np.testing.assert_allclose([a["score"] for a in answers], precomputed, rtol=0, atol=1e-6)
    champion = registry.resolve_alias(settings, usecase)
    assert {a["model_version"] for a in answers} == {champion.version}

    assert keyless.status_code == 200, keyless.text  # key columns are optional
    assert [a["key"] for a in keyless.json()["scores"]] == [None, None]
    np.testing.assert_allclose(
        [a["score"] for a in keyless.json()["scores"]], precomputed[:2], rtol=0, atol=1e-6
    )

    assert batch.status_code == 200, batch.text
    both = batch.json()["scores"]
    assert [a["source"] for a in both] == ["precomputed"] * 50 + ["computed"] * 5
    assert None not in [a["freshness"] for a in both[:50]]  # judged by the snapshot's times
    np.testing.assert_allclose([a["score"] for a in both[50:]], precomputed[:5], atol=1e-6)

    for column, answer in refusals.items():
        assert answer.status_code == 422, (column, answer.text)
        assert column in answer.json()["detail"]


def test_every_score_carries_its_reasons_from_the_stage_to_sql_http_and_compute(
    spark: SparkSession, flow
) -> None:
    """churn explains its scores (top 3): the stored reasons are the champion's own TreeSHAP
    contributions, largest first, which with the rest and the bias add up to the margin; the
    client, the HTTP answer, the snapshot's `scores` view and a score computed from the same
    features give the same reasons."""
    ctx, _ = flow
    usecase, settings = ctx.usecase, ctx.settings
    assert usecase.score.explain is not None and usecase.score.explain.top_k == 3
    package = registry.load_package(registry.resolve_alias(settings, usecase))
    clean = tables.read_run(spark, settings, usecase.clean_table, RUN_DATE)
    rows = clean.select(*usecase.keys, *usecase.features).orderBy(*usecase.keys).limit(20)
    records = json.loads(rows.toPandas().to_json(orient="records"))
    keys = [r["customer_id"] for r in records]
    preds = tables.read_run(spark, settings, usecase.predictions_table, RUN_DATE)
    stored = {r.customer_id: r for r in preds.where(F.col("customer_id").isin(keys)).collect()}

    matrix = package.preprocessing.frame_matrix(pd.DataFrame.from_records(records))
    names = package.booster.feature_names
    dmatrix = xgboost.DMatrix(matrix, missing=np.nan, feature_names=names)
    shap = package.booster.predict(dmatrix, pred_contribs=True)
    margin = package.booster.predict(dmatrix, output_margin=True)
    np.testing.assert_allclose(shap.sum(axis=1), margin, atol=1e-5)
    for key, contributions in zip(keys, shap[:, :-1], strict=True):
        top = np.argsort(-np.abs(contributions), kind="stable")[:3]
        reasons = stored[key].reasons
        assert [r.feature for r in reasons] == [package.features[j] for j in top]
        np.testing.assert_allclose(
            [r.contribution for r in reasons], contributions[top], rtol=0, atol=1e-6
        )

    def named(reasons) -> list[tuple[str, str | None]]:
        return [(r["feature"], r["value"]) for r in reasons]

    def sizes(reasons) -> list[float]:
        return [r["contribution"] for r in reasons]

    expected = {k: [r.asDict() for r in stored[k].reasons] for k in keys}
    client = Scores(usecase, settings)
    with duckdb.connect(str(client.snapshot), read_only=True) as con:
        sql = con.execute(
            "select customer_id, reasons from scores where customer_id in ?", [keys]
        ).fetchall()
    with running(create_app(settings, [usecase])) as http:
        one = http.get(f"/v1/churn/scores/{keys[0]}").json()
        computed = http.post("/v1/churn/scores:compute", json={"rows": records}).json()
    answers = {
        "client": {s.key[0]: [r._asdict() for r in s.reasons] for s in client.get_many(keys)},
        "sql": dict(sql),
        "http": {keys[0]: one["reasons"]},
        "compute": {a["key"]["customer_id"]: a["reasons"] for a in computed["scores"]},
    }
    for where, found in answers.items():
        for key, reasons in found.items():
            assert named(reasons) == named(expected[key]), (where, key)
            assert sizes(reasons) == pytest.approx(sizes(expected[key]), abs=1e-6), (where, key)
        assert len(found) == (1 if where == "http" else len(keys)), where


def test_the_preprocessing_alone_is_the_packages_own(flow, tmp_path: Path) -> None:
    """The monitor reads only a version's fitted preprocessing (no booster, no XGBoost): it is
    the one the whole package loads with; a bare booster is refused, naming the version."""
    ctx, _ = flow
    champion = registry.resolve_alias(ctx.settings, ctx.usecase)
    assert load_preprocessing(champion) == registry.load_package(champion).preprocessing

    booster = xgboost.train({}, xgboost.DMatrix(np.eye(2), label=[0, 1]), num_boost_round=1)
    bare = ctx.settings.model_copy(update={"state_dir": tmp_path / "state"})
    name = registry.model_name(bare, ctx.usecase)
    with mlflow.start_run(experiment_id=registry.experiment_id(bare, ctx.usecase)):
        info = mlflow.xgboost.log_model(booster, name="model", registered_model_name=name)
    ref = registry.model_version(bare, ctx.usecase, str(info.registered_model_version))
    with pytest.raises(registry.NotAPackageError, match=rf"{name} v1 is not a prescore model"):
        load_preprocessing(ref)


def test_missing_key_is_reported_missing(flow) -> None:
    ctx, _ = flow
    found = Scores(ctx.usecase, ctx.settings).get("no-such-customer")
    assert (found.score, found.freshness) == (None, "missing")


def test_every_prediction_row_carries_lineage(spark: SparkSession, flow) -> None:
    ctx, summary = flow
    preds = tables.read_run(spark, ctx.settings, ctx.usecase.predictions_table, RUN_DATE)
    lineage = (
        preds.select("model_name", "model_version", "features_version", "scored_at")
        .distinct()
        .collect()
    )
    assert len(lineage) == 1
    assert lineage[0].model_version == summary["train"]["version"]
    assert lineage[0].features_version == summary["clean"]["clean_version"]


@pytest.mark.reliability
def test_rerunning_a_date_replaces_and_never_duplicates(
    spark: SparkSession, flow, tmp_path: Path
) -> None:
    ctx = copy_of_flow(flow, tmp_path / "state")
    tables_to_check = [
        ctx.usecase.raw_table,
        ctx.usecase.clean_table,
        ctx.usecase.predictions_table,
    ]
    before = {t: _keys(spark, ctx, t) for t in tables_to_check}
    run_flow(ctx)
    after = {t: _keys(spark, ctx, t) for t in tables_to_check}
    assert after == before
    rows, distinct = after[ctx.usecase.predictions_table]
    assert rows == distinct
    assert Scores(ctx.usecase, ctx.settings).snapshot.exists()


def _table_text(spark: SparkSession, settings: Settings, table: str) -> str:
    """Every version of a Delta table (time travel over its whole history), every column cast to
    string, one line per row and version."""
    history = DeltaTable.forPath(spark, str(settings.table_path(table))).history()
    texts = []
    for (version,) in history.select("version").collect():
        df = tables.read(spark, settings, table, int(version))
        cells = [F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("")) for c in df.columns]
        texts.append(df.select(F.concat_ws("\t", *cells).alias("row")))
    rows = functools.reduce(DataFrame.unionAll, texts).collect()
    return "\n".join(r[0] for r in rows)


def _snapshot_text(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as con:
        return str(con.execute("select * from predictions").fetchall())


@pytest.mark.reliability
def test_no_raw_pii_value_or_secret_downstream_of_raw(spark: SparkSession, flow) -> None:
    """Case 11: after a full run, no landing value of a PII column and not the HMAC secret is in
    any version of any Delta table but raw (quarantine included: its rows carry PII anonymised as
    declared), in any column; nor in those tables' files (logs with their column statistics,
    data files), the serving snapshots and key files, the MLflow store (database, params, tags,
    artifacts), the reports, or the flow's log.

    raw_<entity> keeps source rows as they came, by design: the same search finds the PII values
    there, which shows that the search works.
    """
    ctx, _ = flow
    settings, usecase = ctx.settings, ctx.usecase
    landing = pd.read_parquet(landing_dir(settings, usecase, RUN_DATE))
    pii_values = {str(v) for c in usecase.pii for v in landing[c].dropna().head(200)}
    secret = os.environ["PRESCORE_HMAC_KEY"]
    downstream = [p.name for p in settings.delta_dir.iterdir() if p.name != usecase.raw_table]
    texts = {t: _table_text(spark, settings, t) for t in downstream}
    texts |= {p.name: _snapshot_text(p) for p in settings.serving_dir.rglob("*.duckdb")}
    folders = ["mlflow", "serving", "reports", FLOW_LOG, *(f"delta/{t}" for t in downstream)]
    files = [
        p
        for folder in folders
        for p in [settings.state_dir / folder, *(settings.state_dir / folder).rglob("*")]
        if p.is_file()
    ]
    texts |= {str(p): p.read_bytes().decode("latin-1") for p in files}
    expected = {usecase.clean_table, usecase.quarantine_table, usecase.predictions_table}
    assert expected | {"publish_log"} <= set(texts)
    assert usecase.pii and all(len(texts[t]) > 0 for t in expected)
    assert "publish:" in texts[str(settings.state_dir / FLOW_LOG)]  # the log was written
    leaks = [(name, s) for name, text in texts.items() for s in pii_values if s in text]
    assert leaks == []
    raw = _table_text(spark, settings, usecase.raw_table)
    assert all(secret not in text for text in [*texts.values(), raw])
    assert all(s in raw for s in pii_values)
