"""PII stays where it is declared and the secret stays secret, run as a user runs prescore.

One state folder, made through the CLI (`prescore datagen`, `ingest`, `validate`, `clean` on
1000 churn customers), then: no file or folder in it is world-readable; quarantine holds no PII
value in the clear; `prescore retention` deletes and vacuums the expired run dates; the HMAC key
is in no Spark plan, and in no event log or log of a `prescore clean` run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prescore import cli
from prescore.config import Settings, UseCase
from prescore.data.cleaning import anonymise, quarantine_rows
from prescore.platform import tables

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
RUN_DATE = date(2026, 11, 1)
ROWS = 1000


@dataclass(frozen=True)
class State:
    settings: Settings
    usecase: UseCase


def _prescore(*args: str) -> None:
    assert cli.main([*args, "--usecase", "churn", "--run-date", RUN_DATE.isoformat()]) == 0, args


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@pytest.fixture(scope="module")
def state(
    spark: SparkSession,
    settings: Settings,
    churn: UseCase,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[State]:
    """A fresh state folder (not made beforehand: prescore makes it) filled through the CLI, in
    this process, as `prescore` would; the umask the CLI sets is put back afterwards."""
    folder = tmp_path_factory.mktemp("pii") / "state"
    umask = _umask()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PRESCORE_ENV", "test")
        env.setenv("PRESCORE_STATE_DIR", str(folder))
        try:
            _prescore("datagen", "--rows", str(ROWS))
            for stage in ("ingest", "validate", "clean"):
                _prescore(stage)
            yield State(settings.model_copy(update={"state_dir": folder}), churn)
        finally:
            os.umask(umask)


def _secret_forms(secret: bytes) -> dict[str, str]:
    """The key as text, and its bytes, padded key and RFC 2104 pads in hex and base64: the forms
    a plan or a log would print it in. Computed here, not with prescore's own helper."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    padded = key.ljust(64, b"\0")
    inner, outer = bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)
    forms = {"key": secret.decode("latin-1")}
    for name, raw in {"key": key, "inner pad": inner, "outer pad": outer}.items():
        forms[f"{name} hex"] = raw.hex()
        forms[f"{name} base64"] = base64.b64encode(raw).decode()
    return forms


def _found(forms: dict[str, str], text: str) -> list[str]:
    lower = text.lower()
    return [name for name, form in forms.items() if form in text or form.lower() in lower]


# ---------------------------------------------------------------- state files


def test_state_folder_files_are_not_world_readable(state: State) -> None:
    """Delta tables (written by the JVM's Hadoop file system), landing files and reports, and
    every folder holding them: no access for others (umask 027 in the CLI and in Spark)."""
    paths = [state.settings.state_dir, *state.settings.state_dir.rglob("*")]
    open_to_all = [f"{oct(p.stat().st_mode)} {p}" for p in paths if p.stat().st_mode & 0o007]
    assert open_to_all == []
    raw = state.settings.table_path(state.usecase.raw_table)
    assert any(raw.rglob("*.parquet")) and any((raw / "_delta_log").glob("*.json"))
    assert any((state.settings.reports_dir / "churn").glob("*.html"))
    assert not state.settings.state_dir.stat().st_mode & stat.S_IROTH


# ---------------------------------------------------------------- quarantine


def _text(df: DataFrame) -> str:
    """Every column of every row cast to string, one line per row."""
    cells = [F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("")) for c in df.columns]
    return "\n".join(r[0] for r in df.select(F.concat_ws("\t", *cells)).collect())


def test_quarantine_holds_pii_only_anonymised_as_declared(
    spark: SparkSession, state: State
) -> None:
    """After a real clean: every quarantined email is the HMAC of a raw email, no name is kept,
    and no raw email, phone or name appears in any column of the quarantine table."""
    settings, usecase = state.settings, state.usecase
    raw = tables.read_run(spark, settings, usecase.raw_table, RUN_DATE)
    clear = {str(v) for c in usecase.pii for (v,) in raw.select(c).dropna().collect()}
    quarantine = tables.read_run(spark, settings, usecase.quarantine_table, RUN_DATE)
    rows = [json.loads(r.raw_row) for r in quarantine.select("raw_row").collect()]
    assert len(rows) > 10  # invalid rows and older duplicates
    secret = os.environ["PRESCORE_HMAC_KEY"].encode()
    hashed = {hmac.new(secret, e.encode(), hashlib.sha256).hexdigest() for e in clear}
    assert all("name" not in row for row in rows)
    assert {row["email"] for row in rows if row["email"] is not None} <= hashed
    assert {row["phone"] for row in rows if row["phone"] is not None} <= hashed
    text = _text(quarantine)
    assert [v for v in clear if v in text] == []


# ---------------------------------------------------------------- retention


def _run_dates(spark: SparkSession, settings: Settings, table: str) -> set[date]:
    return {
        r[0] for r in tables.read(spark, settings, table).select("run_date").distinct().collect()
    }


def _copy_run(spark: SparkSession, settings: Settings, table: str, day: date) -> None:
    rows = tables.read_run(spark, settings, table, RUN_DATE).withColumn("run_date", F.lit(day))
    tables.replace_run(rows, settings, table, day)


def _files(spark: SparkSession, settings: Settings, table: str, day: date) -> list[Path]:
    """The data files on disk of one run date in the latest version of a table."""
    rows = tables.read_run(spark, settings, table, day).select(F.input_file_name()).distinct()
    return sorted(Path(urlparse(r[0]).path) for r in rows.collect())


def test_retention_command_deletes_and_vacuums_expired_run_dates(
    spark: SparkSession,
    state: State,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`prescore retention` with retention_days 90 on 2026-11-01: raw and quarantine lose the run
    dates before 2026-08-03, from their latest version and from disk; 2026-08-03 on stay, a later
    date too; clean, which keeps its history, is untouched. A second run deletes nothing."""
    settings, usecase = state.settings, state.usecase
    assert usecase.retention_days == 90
    old, edge, kept, later = date(2026, 5, 1), date(2026, 8, 2), date(2026, 8, 3), date(2026, 11, 5)
    zone = (usecase.raw_table, usecase.quarantine_table)
    for table in zone:
        for day in (old, edge, kept, later):
            _copy_run(spark, settings, table, day)
    _copy_run(spark, settings, usecase.clean_table, old)
    expired_files = {
        t: [*_files(spark, settings, t, old), *_files(spark, settings, t, edge)] for t in zone
    }
    assert all(expired_files.values()) and all(
        f.is_file() for fs in expired_files.values() for f in fs
    )
    clean_before = tables.latest_version(settings, usecase.clean_table)
    monkeypatch.setenv("PRESCORE_ENV", "test")
    monkeypatch.setenv("PRESCORE_STATE_DIR", str(settings.state_dir))
    umask = _umask()
    try:
        capsys.readouterr()
        assert cli.main(["retention", "--usecase", "churn", "--run-date", str(RUN_DATE)]) == 0
        done = json.loads(capsys.readouterr().out)
        vacuumed = {t: tables.latest_version(settings, t) for t in zone}
        assert cli.main(["retention", "--usecase", "churn", "--run-date", str(RUN_DATE)]) == 0
        again = json.loads(capsys.readouterr().out)
    finally:
        os.umask(umask)

    assert done["deleted_before"] == "2026-08-03"
    for table in zone:
        went = done["tables"][table]
        assert went["deleted_run_dates"] == ["2026-05-01", "2026-08-02"], table
        assert went["deleted_rows"] > 0 and went["vacuumed_files"] >= len(expired_files[table])
        assert _run_dates(spark, settings, table) == {kept, RUN_DATE, later}, table
        assert [f for f in expired_files[table] if f.exists()] == [], table
        for day in (old, edge):
            assert not (settings.table_path(table) / f"run_date={day}").exists()
        assert again["tables"][table]["deleted_run_dates"] == [], table
        # Nothing was removed since the first run's vacuum: the second writes no commit at all.
        assert again["tables"][table]["vacuumed_files"] == 0, table
        assert tables.latest_version(settings, table) == vacuumed[table], table
    assert tables.latest_version(settings, usecase.clean_table) == clean_before
    assert _run_dates(spark, settings, usecase.clean_table) == {old, RUN_DATE}
    rows = tables.read_run(spark, settings, usecase.raw_table, RUN_DATE).count()
    assert rows == tables.read_run(spark, settings, usecase.raw_table, kept).count() > 0


def test_a_vacuum_is_skipped_only_when_no_commit_since_the_last_removed_a_file(
    spark: SparkSession, fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """removed_since_vacuum along a table's life: its first commit and the write of a new run
    date remove nothing; replacing a run date may have, until a vacuum; so may any history with
    no vacuum in reach. (The retention test above covers a delete.)"""
    settings, table = fresh_settings, "raw_vacuum"

    def write(day: date) -> None:
        rows = spark.range(10).withColumn("run_date", F.lit(day))
        tables.replace_run(rows, settings, table, day)

    def removed() -> bool:
        return tables.removed_since_vacuum(spark, settings, table)

    write(date(2026, 1, 1))
    assert not removed()  # the first commit: nothing to remove
    write(date(2026, 1, 1))
    assert removed()  # the run date's files replaced
    kept = tables.delete_runs_before(spark, settings, table, date(2026, 1, 1))
    assert kept["deleted_run_dates"] == [] and kept["vacuumed_files"] > 0
    assert not removed()
    write(date(2026, 1, 2))
    assert not removed()  # a new run date: numRemovedFiles 0
    monkeypatch.setattr(tables, "VACUUM_LOOKBACK", 1)  # the vacuum two commits back
    assert removed()  # new run dates only, but the last vacuum out of reach


# ---------------------------------------------------------------- the HMAC key


def test_hmac_key_is_in_no_spark_plan(
    spark: SparkSession, state: State, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clean's and quarantine's hashing of real raw rows: neither the key nor its pads, in any
    form, in any explain mode or in the executed plan (what the Spark UI's SQL tab shows)."""
    settings, usecase = state.settings, state.usecase
    secret = os.environ["PRESCORE_HMAC_KEY"].encode()
    raw = tables.read_run(spark, settings, usecase.raw_table, RUN_DATE)
    frames = {
        "clean": raw.transform(anonymise, pii=usecase.pii, secret=secret),
        "quarantine": quarantine_rows(
            raw.withColumn("_quarantine_reason", F.lit("r")), pii=usecase.pii, secret=secret
        ),
    }
    texts = {}
    for name, df in frames.items():
        for mode in ("simple", "extended", "codegen", "cost", "formatted"):
            df.explain(mode=mode)
            texts[f"{name} {mode}"] = capsys.readouterr().out
        assert df.count() > 0
        texts[f"{name} executed"] = df._jdf.queryExecution().toString()  # type: ignore[operator]
    assert all("sha2" in text for name, text in texts.items() if "codegen" not in name)
    forms = _secret_forms(secret)
    assert {name: _found(forms, text) for name, text in texts.items() if _found(forms, text)} == {}


def test_hmac_key_is_in_no_event_log_or_log_of_a_clean_run(state: State, tmp_path: Path) -> None:
    """`prescore clean` in its own process with Spark's event log on (spark-defaults.conf, as
    for a History Server; uncompressed so it can be searched): the log holds the plans of the
    run, and the key is in none of them, nor in the command's output and log."""
    events, conf = tmp_path / "events", tmp_path / "spark-conf"
    events.mkdir()
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(
        f"spark.eventLog.enabled true\nspark.eventLog.dir {events.as_uri()}\n"
        "spark.eventLog.compress false\n"
    )
    env = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(state.settings.state_dir),
        "SPARK_CONF_DIR": str(conf),
    }
    prescore = str(Path(sys.executable).with_name("prescore"))
    command = [prescore, "clean", "--usecase", "churn", "--run-date", RUN_DATE.isoformat()]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = "\n".join(p.read_text("latin-1") for p in events.rglob("*") if p.is_file())
    assert "SparkListenerSQLExecutionStart" in logged and "sha2" in logged  # the plans are there
    forms = _secret_forms(os.environ["PRESCORE_HMAC_KEY"].encode())
    assert _found(forms, logged) == []
    assert _found(forms, done.stdout + done.stderr) == []
