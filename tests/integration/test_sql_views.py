"""sql/delta/ views in DuckDB over the real Delta tables: history, as-of, publish log, comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from pyspark.sql import DataFrame, SparkSession

from prescore.config import Settings, UseCase, load_settings
from prescore.context import RunContext
from prescore.platform import tables
from prescore.serving import bi
from prescore.stages import publish

pytestmark = pytest.mark.integration
PRESCORE = str(Path(sys.executable).with_name("prescore"))  # the venv's console script
DAY1, DAY2 = date(2026, 11, 5), date(2026, 11, 6)
PRED_SCHEMA = (
    "customer_id string, score double, model_name string, model_version string, model_run_id string, "
    "features_version bigint, scored_at timestamp, valid_until timestamp, run_date date"
)
SHADOW_SCHEMA = (
    "customer_id string, champion_score double, challenger_score double, model_name string, "
    "champion_version string, challenger_version string, challenger_run_id string, "
    "scored_at timestamp, run_date date"
)


def predictions(
    spark: SparkSession, run_date: date, scores: dict[str, float], version: str, clean_version: int
) -> DataFrame:
    until = datetime(2026, 12, 1)
    rows = [
        (k, s, "prescore-churn", version, "run", clean_version, datetime.now(), until, run_date)
        for k, s in scores.items()
    ]
    return spark.createDataFrame(rows, PRED_SCHEMA)


def publish_day(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    run_date: date,
    scores: dict[str, float],
    version: str,
) -> None:
    keys = spark.createDataFrame(
        [(k, run_date) for k in scores], "customer_id string, run_date date"
    )
    clean_version = tables.replace_run(keys, settings, churn.clean_table, run_date)
    preds = predictions(spark, run_date, scores, version, clean_version)
    tables.replace_run(preds, settings, churn.predictions_table, run_date)
    publish.run(RunContext(settings, churn, run_date, spark))


LOCAL_STATE = load_settings(env="test")  # the extensions a local state's readers load


def query(path: Path, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    """As a BI session would: open the file read-only, load the extension, query a view."""
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(bi.load_statement(LOCAL_STATE))
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def published(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
):
    """Day 1 published, then day 2, then day 2 rolled back to day 1; the moments between kept."""
    state = settings.model_copy(update={"state_dir": tmp_path_factory.mktemp("views")})
    publish_day(spark, state, churn, DAY1, {"a": 0.1, "b": 0.2}, "1")
    after_day1 = datetime.now()
    time.sleep(0.01)
    publish_day(spark, state, churn, DAY2, {"a": 0.7, "b": 0.8, "c": 0.9}, "2")
    after_day2 = datetime.now()
    time.sleep(0.01)
    publish.rollback(spark, state, churn)
    return state, after_day1, after_day2


def test_views_over_missing_tables_are_skipped_and_named(
    published, churn: UseCase, tmp_path: Path
) -> None:
    state, *_ = published
    made = bi.build_bi_views(state, churn, tmp_path / "bi.duckdb")
    assert made == {
        "created": ["publish_log", "score_history", "score_as_of"],
        "skipped": ["model_comparison", "monitoring_alerts", "monitoring_latest"],
    }


def test_publish_log_view_says_what_was_served_when(
    published, churn: UseCase, tmp_path: Path
) -> None:
    state, *_ = published
    path = tmp_path / "bi.duckdb"
    bi.build_bi_views(state, churn, path)
    rows = query(path, "select action, run_date, model_version, is_current from publish_log")
    assert rows == [
        ("publish", DAY1, "1", False),
        ("publish", DAY2, "2", False),
        ("rollback", DAY1, "1", True),
    ]
    gaps = query(
        path,
        "select count(*) from publish_log "
        "where served_until is not null and served_until <= served_from",
    )
    assert gaps == [(0,)]


def test_score_history_has_every_published_run_date_per_key(
    published, churn: UseCase, tmp_path: Path
) -> None:
    state, *_ = published
    path = tmp_path / "bi.duckdb"
    bi.build_bi_views(state, churn, path)
    rows = query(
        path,
        "select run_date, customer_id, score, model_version, as_published from score_history "
        "order by run_date, customer_id",
    )
    assert rows == [
        (DAY1, "a", 0.1, "1", True),
        (DAY1, "b", 0.2, "1", True),
        (DAY2, "a", 0.7, "2", True),
        (DAY2, "b", 0.8, "2", True),
        (DAY2, "c", 0.9, "2", True),
    ]


@pytest.mark.parametrize(
    ("moment", "key", "expected"),
    [
        ("after_day1", "a", (0.1, DAY1)),
        ("after_day2", "a", (0.7, DAY2)),
        ("now", "a", (0.1, DAY1)),
        ("after_day2", "c", (0.9, DAY2)),
        ("now", "c", None),
    ],
    ids=["day1", "day2", "after-rollback", "new-key", "new-key-rolled-back"],
)
def test_score_as_of_answers_what_was_served_then(
    published, churn: UseCase, tmp_path: Path, moment: str, key: str, expected
) -> None:
    state, after_day1, after_day2 = published
    instant = {"after_day1": after_day1, "after_day2": after_day2, "now": datetime.now()}[moment]
    path = tmp_path / "bi.duckdb"
    bi.build_bi_views(state, churn, path)
    rows = query(
        path,
        "select score, run_date from score_as_of where customer_id = ? "
        "and served_from <= ?::timestamptz and (served_until is null or ?::timestamptz < served_until)",
        [key, instant, instant],
    )
    assert rows == ([] if expected is None else [expected])


def test_model_comparison_compares_champion_and_challenger_on_the_same_keys(
    spark: SparkSession, published, churn: UseCase, tmp_path: Path
) -> None:
    state, *_ = published
    rows = [
        ("a", 0.2, 0.3, "prescore-churn", "1", "2", "r2", datetime(2026, 11, 6), DAY2),
        ("b", 0.4, 0.6, "prescore-churn", "1", "2", "r2", datetime(2026, 11, 6), DAY2),
        ("c", 0.8, 0.9, "prescore-churn", "1", "2", "r2", datetime(2026, 11, 6), DAY2),
    ]
    shadow = spark.createDataFrame(rows, SHADOW_SCHEMA)
    tables.replace_run(shadow, state, churn.shadow_table, DAY2)
    path = tmp_path / "bi.duckdb"
    assert "model_comparison" in bi.build_bi_views(state, churn, path)["created"]
    [(keys, mean_diff, correlation, agreement)] = query(
        path,
        "select keys, mean_diff, correlation, agreement_at_0_5 from model_comparison "
        "where run_date = ? and champion_version = '1' and challenger_version = '2'",
        [DAY2],
    )
    assert keys == 3
    assert mean_diff == pytest.approx((0.1 + 0.2 + 0.1) / 3)
    assert correlation == pytest.approx(0.98198, abs=1e-4)
    assert agreement == pytest.approx(2 / 3)  # b: 0.4 vs 0.6 falls on both sides of 0.5


def test_bi_views_command_writes_a_file_a_bi_session_can_query(
    published, churn: UseCase, tmp_path: Path
) -> None:
    """`prescore bi-views` as a user runs it: a JSON summary with the statement to run first,
    and a file whose views answer after that statement."""
    state, *_ = published
    target = tmp_path / "bi" / "churn.duckdb"
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(state.state_dir)}
    command = [PRESCORE, "bi-views", "--usecase", churn.name, "--out", str(target)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["file"] == str(target) and summary["first_run"] == bi.load_statement(state)
    assert "publish_log" in summary["created"]
    assert query(target, "select count(*) from publish_log") == [(3,)]


def test_sql_command_queries_the_delta_tables_offline(published, churn: UseCase) -> None:
    """`prescore sql` as an analyst runs it: the printed statements set up any DuckDB session
    (extension by path, a view per table written), and `-c` answers a query as CSV."""
    state, *_ = published
    env = {**os.environ, "PRESCORE_ENV": "test", "PRESCORE_STATE_DIR": str(state.state_dir)}
    base = [PRESCORE, "sql", "--usecase", churn.name]
    printed = subprocess.run(base, env=env, capture_output=True, text=True, check=False)
    assert printed.returncode == 0, printed.stderr[-2000:]
    preamble = printed.stdout
    assert preamble.startswith(bi.load_statement(state))
    assert "install" not in preamble.lower()  # nothing is downloaded
    with duckdb.connect() as con:
        con.execute(preamble)
        views = {row[0] for row in con.execute("select view_name from duckdb_views()").fetchall()}
        assert {churn.clean_table, churn.predictions_table, "publish_events"} <= views
        assert churn.raw_table not in views  # never written here: no view over a missing table
        assert con.execute(f"select count(*) from {churn.predictions_table}").fetchall() == [(5,)]

    query = f"select run_date, count(*) as n from {churn.predictions_table} group by 1 order by 1"
    answered = subprocess.run([*base, "-c", query], env=env, capture_output=True, text=True)
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert answered.stdout.splitlines() == ["run_date,n", f"{DAY1},2", f"{DAY2},3"]

    wrong = subprocess.run(
        [*base, "-c", "select * from no_such_table"], env=env, text=True, capture_output=True
    )
    assert wrong.returncode == 1
    assert "prescore sql: error: query failed" in wrong.stderr and "no_such_table" in wrong.stderr
