"""Publish: checks on the candidate, atomic pointer move, and nothing visible when a check fails."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pytest
from pyspark.sql import DataFrame, SparkSession

from prescore.config import Settings, UseCase
from prescore.context import RunContext
from prescore.platform import tables
from prescore.scoring.checks import PublishCheckError, candidate_checks
from prescore.serving import publish_log, snapshot
from prescore.serving.client import Scores, SnapshotNotFoundError, freshness
from prescore.serving.keyindex import key_file
from prescore.stages import publish

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 5)
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, model_run_id string, "
    "features_version bigint, scored_at timestamp, valid_until timestamp, run_date date"
)


def predictions(
    spark: SparkSession, scores: list[tuple[str | None, float]], version: str = "1"
) -> DataFrame:
    stamp, until = datetime(2026, 11, 5, 6), datetime(2026, 11, 12)
    rows = [(k, s, "prescore-churn", version, "run1", 0, stamp, until, RUN_DATE) for k, s in scores]
    return spark.createDataFrame(rows, PRED_SCHEMA)


def population(spark: SparkSession, keys: list[str]) -> DataFrame:
    return spark.createDataFrame([(k, RUN_DATE) for k in keys], "customer_id string, run_date date")


@pytest.mark.parametrize(
    ("scores", "failed"),
    [
        ([("a", 0.1), ("b", 0.2), ("c", 0.3)], set()),
        ([("a", 0.1), ("a", 0.2), ("c", 0.3)], {"unique_keys"}),
        ([("a", 0.1), (None, 0.2), ("c", 0.3)], {"no_null_keys"}),
        ([("a", 0.1), ("b", float("nan")), ("c", 0.3)], {"no_nan_scores"}),
        ([("a", 0.1), ("b", 1.7), ("c", 0.3)], {"scores_in_range"}),
        ([("a", 0.1), ("b", 0.2)], {"row_count"}),
    ],
    ids=["clean", "duplicate", "null-key", "nan", "out-of-range", "short"],
)
def test_candidate_checks_name_what_failed(
    spark: SparkSession, churn: UseCase, scores, failed: set[str]
) -> None:
    results = candidate_checks(predictions(spark, scores), usecase=churn, expected_rows=3)
    assert {r.name for r in results if not r.passed} == failed


def test_failed_check_publishes_nothing_and_keeps_the_current_snapshot(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
    tables.replace_run(
        population(spark, ["a", "b", "c"]), fresh_settings, churn.clean_table, RUN_DATE
    )
    tables.replace_run(
        predictions(spark, [("a", 0.1), ("b", 0.2), ("c", 0.3)]),
        fresh_settings,
        churn.predictions_table,
        RUN_DATE,
    )
    first = publish.run(ctx)
    scores = Scores(churn, fresh_settings, now=lambda: datetime(2026, 11, 6))
    assert scores.get("b").score == pytest.approx(0.2)
    assert scores.get("b").freshness == "fresh"

    bad = predictions(spark, [("a", 0.9), ("a", 0.8), ("c", 0.7)], version="2")
    tables.replace_run(bad, fresh_settings, churn.predictions_table, RUN_DATE)
    with pytest.raises(
        PublishCheckError, match=r"pred_churn v1 not published: unique_keys: 1 duplicate keys"
    ):
        publish.run(ctx)
    assert scores.snapshot == snapshot.snapshot_path(
        fresh_settings, churn, RUN_DATE, first["predictions_version"]
    )
    assert scores.get("b").score == pytest.approx(0.2)
    log = tables.read(spark, fresh_settings, publish_log.PUBLISH_LOG).collect()
    assert [(r.action, r.predictions_version) for r in log] == [("publish", 0)]


@pytest.mark.reliability
def test_snapshot_has_views_and_refuses_file_access(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
    tables.replace_run(population(spark, ["a", "b"]), fresh_settings, churn.clean_table, RUN_DATE)
    tables.replace_run(
        predictions(spark, [("a", 0.1), ("b", 0.9)]),
        fresh_settings,
        churn.predictions_table,
        RUN_DATE,
    )
    publish.run(ctx)
    path = snapshot.current_path(fresh_settings, churn)
    with duckdb.connect(str(path), read_only=True, config={"enable_external_access": False}) as con:
        assert con.execute("select count(*) from scores").fetchone() == (2,)
        assert con.execute("select sum(keys) from score_distribution").fetchone() == (2,)
        # run_date once, even when Delta also wrote the partition column into the data files
        columns = [row[0] for row in con.execute("describe predictions").fetchall()]
        assert [c for c in columns if c.startswith("run_date")] == ["run_date"]
        assert con.execute("select distinct run_date from predictions").fetchall() == [(RUN_DATE,)]
        # Spark's Parquet statistics show the run's stamps constant: each is held once, virtual.
        virtual = con.execute(
            "select column_name from duckdb_columns() "
            "where table_name = 'predictions' and column_default is not null"
        ).fetchall()
        assert {"model_version", "scored_at", "run_date"} <= {name for (name,) in virtual}
        stamps = "select distinct model_version, scored_at::timestamp from predictions"
        assert con.execute(stamps).fetchall() == [("1", datetime(2026, 11, 5, 6))]
        with pytest.raises(duckdb.Error):
            con.execute("select * from read_csv('/etc/passwd')").fetchall()


def test_rollback_serves_the_previous_publish_and_logs_it(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    tables.replace_run(population(spark, ["a", "b"]), fresh_settings, churn.clean_table, RUN_DATE)
    tables.replace_run(
        predictions(spark, [("a", 0.1), ("b", 0.2)]),
        fresh_settings,
        churn.predictions_table,
        RUN_DATE,
    )
    publish.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    tables.replace_run(
        predictions(spark, [("a", 0.7), ("b", 0.8)], version="2"),
        fresh_settings,
        churn.predictions_table,
        RUN_DATE,
    )
    publish.run(RunContext(fresh_settings, churn, RUN_DATE, spark))
    scores = Scores(churn, fresh_settings)
    assert (scores.get("a").score, scores.get("a").model_version) == (pytest.approx(0.7), "2")

    publish.rollback(spark, fresh_settings, churn)
    assert (scores.get("a").score, scores.get("a").model_version) == (pytest.approx(0.1), "1")
    log = (
        tables.read(spark, fresh_settings, publish_log.PUBLISH_LOG)
        .orderBy("published_at")
        .collect()
    )
    assert [(r.action, r.predictions_version) for r in log] == [
        ("publish", 0),
        ("publish", 1),
        ("rollback", 0),
    ]

    with pytest.raises(LookupError, match=r"no run date 2026-01-01 to roll back to"):
        publish.rollback(spark, fresh_settings, churn, to=date(2026, 1, 1))


def test_as_of_answers_from_the_snapshot_current_at_that_time(
    spark: SparkSession, fresh_settings: Settings, churn: UseCase
) -> None:
    ctx = RunContext(fresh_settings, churn, RUN_DATE, spark)
    tables.replace_run(population(spark, ["a", "b"]), fresh_settings, churn.clean_table, RUN_DATE)
    for scores, version in (([("a", 0.1), ("b", 0.2)], "1"), ([("a", 0.7), ("b", 0.8)], "2")):
        tables.replace_run(
            predictions(spark, scores, version), fresh_settings, churn.predictions_table, RUN_DATE
        )
        publish.run(ctx)
        if version == "1":
            between = datetime.now()
    client = Scores(churn, fresh_settings)

    then = client.get("a", as_of=between)
    assert (then.score, then.model_version) == (pytest.approx(0.1), "1")
    assert then.freshness == freshness(
        then.scored_at, then.valid_until, now=between, stale_after=timedelta(hours=36)
    )
    assert [s.score for s in client.get_many(["a", "b"], as_of=datetime.now())] == [0.7, 0.8]
    assert [s.score for s in client.get_many(["a", "b"], as_of=date.today())] == [0.7, 0.8]
    with pytest.raises(
        SnapshotNotFoundError, match=r"'churn': nothing was published by 2020-01-01"
    ):
        client.get("a", as_of=date(2020, 1, 1))

    # Retention prunes the earlier snapshot: `between` is refused, its keys leave memory, and
    # no rollback can return to it.
    held = min(client._past)  # <run date>-v0: the first publish's, read for `between`
    held.unlink()
    key_file(held).unlink()
    with pytest.raises(SnapshotNotFoundError, match=r"current at .* is no longer kept"):
        client.get("a", as_of=between)
    assert held not in client._past
    with pytest.raises(LookupError, match=r"is no longer kept .* republish run date"):
        publish.rollback(spark, fresh_settings, churn)
