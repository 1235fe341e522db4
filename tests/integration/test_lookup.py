"""Key lookups: exact scores from the key file, freshness, bad keys, and hot swaps between snapshots.

Snapshots are built from Parquet written with pyarrow, by snapshot.build_snapshot as publish does.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prescore.config import Settings, UseCase
from prescore.serving import keyindex, snapshot
from prescore.serving.client import (
    Score,
    Scores,
    SnapshotDamagedError,
    SnapshotNotFoundError,
    SnapshotUnreadableError,
)
from prescore.training.package import reasons_type
from support import point_current_to

pytestmark = pytest.mark.integration
RUN_DATE = date(2026, 11, 5)
SCORED_AT = datetime(2026, 11, 5, 6)
VALID_UNTIL = datetime(2026, 11, 12)
KEYS = [f"C{i:08d}" for i in range(200)]


def write_predictions(
    path: Path, usecase: UseCase, rows: list[tuple[Any, ...]], version: str, **columns: Any
) -> Path:
    """Predictions as the score stage writes them; rows: (key values..., score) per key."""
    n = len(rows)
    table = pa.table(
        {
            **{k: [r[i] for r in rows] for i, k in enumerate(usecase.keys)},
            "score": pa.array([r[-1] for r in rows], pa.float64()),
            "model_name": [f"prescore-{usecase.name}"] * n,
            "model_version": [version] * n,
            "model_run_id": ["run"] * n,
            "features_version": pa.array([0] * n, pa.int64()),
            "scored_at": pa.array([SCORED_AT] * n, pa.timestamp("us")),
            "valid_until": pa.array([VALID_UNTIL] * n, pa.timestamp("us")),
            **columns,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def build(
    settings: Settings, usecase: UseCase, rows: list[tuple[Any, ...]], version: int, **columns: Any
) -> Path:
    """Snapshot v<version> (model_version str(version)) of these rows; the pointer does not move."""
    parquet = settings.state_dir / f"{usecase.name}-v{version}.parquet"
    write_predictions(parquet, usecase, rows, str(version), **columns)
    built, _ = snapshot.build_usecase_snapshot(settings, usecase, RUN_DATE, version, [str(parquet)])
    return built


def publish(
    settings: Settings,
    usecase: UseCase,
    rows: list[tuple[Any, ...]],
    version: int = 1,
    **columns: Any,
) -> Path:
    built = build(settings, usecase, rows, version, **columns)
    point_current_to(settings, usecase, built)
    return built


def scores_at(now: datetime, settings: Settings, usecase: UseCase) -> Scores:
    return Scores(usecase, settings, now=lambda: now)


@pytest.fixture
def composite(churn: UseCase) -> UseCase:
    """A use case keyed by a string and an integer column."""
    return churn.model_copy(update={"name": "churn_by_product", "keys": ["customer_id", "product"]})


@pytest.fixture
def published(fresh_settings: Settings, churn: UseCase) -> Scores:
    publish(fresh_settings, churn, [(k, i / 1000) for i, k in enumerate(KEYS)])
    return scores_at(SCORED_AT + timedelta(hours=1), fresh_settings, churn)


# ---------------------------------------------------------------- answers


def test_get_returns_each_keys_published_score_and_lineage(published: Scores) -> None:
    for i in (0, 7, 199):
        assert published.get(KEYS[i]) == Score(
            key=(KEYS[i],),
            score=pytest.approx(i / 1000),
            freshness="fresh",
            model_name="prescore-churn",
            model_version="1",
            scored_at=SCORED_AT,
            valid_until=VALID_UNTIL,
            run_date=RUN_DATE,
            source="precomputed",
        )


def test_get_many_answers_in_request_order_with_missing_keys(published: Scores) -> None:
    asked = [KEYS[5], "C99999999", KEYS[5], KEYS[0], "nope"]
    found = published.get_many(asked)
    assert [s.key for s in found] == [(k,) for k in asked]
    assert [s.score for s in found] == [0.005, None, 0.005, 0.0, None]
    assert [s.freshness for s in found] == ["fresh", "missing", "fresh", "fresh", "missing"]
    assert published.get_many([]) == []


def test_get_and_get_many_agree_on_every_key(published: Scores) -> None:
    asked = [*KEYS, *(k.replace("C", "X") for k in KEYS)]
    assert published.get_many(asked) == [published.get(k) for k in asked]


def test_an_empty_snapshot_answers_every_key_missing(
    fresh_settings: Settings, churn: UseCase
) -> None:
    parquet = fresh_settings.state_dir / "empty.parquet"
    write_predictions(parquet, churn, [], "1", customer_id=pa.array([], pa.string()))
    built, rows = snapshot.build_usecase_snapshot(
        fresh_settings, churn, RUN_DATE, 1, [str(parquet)]
    )
    point_current_to(fresh_settings, churn, built)
    scores = scores_at(SCORED_AT, fresh_settings, churn)
    assert rows == 0
    assert scores.get("C1") == Score(key=("C1",), score=None, freshness="missing")
    assert scores.get_many(["C1", "C2"]) == [
        Score(key=(k,), score=None, freshness="missing") for k in ("C1", "C2")
    ]


def test_composite_keys_of_string_and_integer(fresh_settings: Settings, composite: UseCase) -> None:
    rows = [("C1", 1, 0.1), ("C1", 2, 0.2), ("C2", 1, 0.3), ("C1\x00", 1, 0.4)]
    publish(fresh_settings, composite, rows)
    scores = scores_at(SCORED_AT, fresh_settings, composite)
    assert scores.get(("C1", 2)).score == pytest.approx(0.2)
    assert scores.get(["C2", "1"]).key == ("C2", 1)  # the integer part given as text
    assert scores.get(("C1\x00", 1)).score == pytest.approx(0.4)
    assert [s.score for s in scores.get_many([("C1", 1), ("C2", 2), ("C1", 3)])] == [
        0.1,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("stored", "asked"),
    [("42", 42), (42, "42"), (42, "+42"), (42, "042"), (-7, "-7")],
    ids=["int-for-string-column", "text-for-int-column", "plus-sign", "leading-zero", "negative"],
)
def test_a_key_is_found_whichever_type_spells_it(
    fresh_settings: Settings, churn: UseCase, stored: str | int, asked: str | int
) -> None:
    other = 1 if isinstance(stored, int) else "other"
    publish(fresh_settings, churn, [(stored, 0.5), (other, 0.1)])
    found = Scores(churn, fresh_settings).get(asked)
    assert (found.key, found.score) == ((stored,), 0.5)


def test_keys_differing_only_by_control_characters_stay_apart(
    fresh_settings: Settings, churn: UseCase
) -> None:
    keys = ["a", "a\x00", "a\x00\x00", "a\x01", "a\x01\x01", "\x00", "", "é", "a" * 300]
    publish(fresh_settings, churn, [(k, i / 10) for i, k in enumerate(keys)])
    scores = Scores(churn, fresh_settings)
    assert [s.score for s in scores.get_many(keys)] == [i / 10 for i in range(len(keys))]
    assert [scores.get(k).score for k in keys] == [i / 10 for i in range(len(keys))]


# ---------------------------------------------------------------- freshness


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (SCORED_AT + timedelta(hours=1), "fresh"),
        (SCORED_AT + timedelta(hours=36), "fresh"),  # exactly stale_after_hours: not yet stale
        (SCORED_AT + timedelta(hours=36, seconds=1), "stale"),
        (VALID_UNTIL - timedelta(microseconds=1), "stale"),
        (VALID_UNTIL, "expired"),
        (VALID_UNTIL + timedelta(days=30), "expired"),
    ],
    ids=["fresh", "at-stale-limit", "stale", "stale-until-the-end", "expired-at", "expired-after"],
)
def test_freshness_at_an_injected_now(
    fresh_settings: Settings, churn: UseCase, now: datetime, status: str
) -> None:
    assert churn.score.stale_after_hours == 36
    publish(fresh_settings, churn, [("C1", 0.5)])
    scores = scores_at(now, fresh_settings, churn)
    assert scores.get("C1").freshness == status
    assert [s.freshness for s in scores.get_many(["C1", "C2"])] == [status, "missing"]


def test_stamps_that_vary_between_rows_are_answered_per_row(
    fresh_settings: Settings, churn: UseCase
) -> None:
    """One scoring run stamps one model and time, kept once in the key file; rows stitched from
    several runs keep their own, as columns, and each row is judged fresh on its own times."""
    scored = [SCORED_AT, SCORED_AT - timedelta(days=2), SCORED_AT - timedelta(days=9)]
    valid = [VALID_UNTIL, VALID_UNTIL, SCORED_AT]
    stamps = {
        "model_version": ["1", "2", "3"],
        "scored_at": pa.array(scored, pa.timestamp("us")),
        "valid_until": pa.array(valid, pa.timestamp("us")),
    }
    built = build(fresh_settings, churn, [("A", 0.1), ("B", 0.2), ("C", 0.3)], 1, **stamps)
    point_current_to(fresh_settings, churn, built)
    index = keyindex.KeyIndex(keyindex.key_file(built))
    assert index.constants == {"model_name": "prescore-churn"}
    index.close()

    scores = scores_at(SCORED_AT + timedelta(hours=1), fresh_settings, churn)
    answers = scores.get_many(["A", "B", "C", "D"])
    assert [(s.model_version, s.scored_at, s.valid_until, s.freshness) for s in answers] == [
        ("1", scored[0], valid[0], "fresh"),
        ("2", scored[1], valid[1], "stale"),
        ("3", scored[2], valid[2], "expired"),
        (None, None, None, "missing"),
    ]
    assert [scores.get(key) for key in "ABCD"] == answers


@pytest.mark.parametrize("stitched", [False, True], ids=["one run", "stitched runs"])
def test_snapshot_table_holds_every_prediction_in_key_order_and_constants_once(
    fresh_settings: Settings, churn: UseCase, stitched: bool
) -> None:
    """A column with one value in every row is a virtual column of the table: it reads back like
    the others, and is not stored or sorted. Stamps that vary between rows stay stored columns."""
    versions = {"model_version": ["2", "1", "3"]} if stitched else {}
    snapshot = build(fresh_settings, churn, [("B", 0.2), ("A", 0.1), ("C", 0.3)], 1, **versions)
    parquet = fresh_settings.state_dir / f"{churn.name}-v1.parquet"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        table = con.execute("select * exclude (run_date) from predictions").fetchall()
        files = con.execute(
            "select * from read_parquet(?) order by customer_id", [str(parquet)]
        ).fetchall()
        assert table == files
        assert con.execute("select distinct run_date from predictions").fetchall() == [(RUN_DATE,)]
        virtual = con.execute(
            "select column_name from duckdb_columns() "
            "where table_name = 'predictions' and column_default is not null"
        ).fetchall()
    constants = {"model_name", "model_run_id", "features_version", "scored_at", "valid_until"}
    expected = constants | {"run_date"} | (set() if stitched else {"model_version"})
    assert {name for (name,) in virtual} == expected


def test_one_runs_stamps_are_kept_once_as_constants(published: Scores) -> None:
    index = keyindex.KeyIndex(keyindex.key_file(published.snapshot))
    assert index.constants == {
        "model_name": "prescore-churn",
        "model_version": "1",
        "scored_at": SCORED_AT,
        "valid_until": VALID_UNTIL,
    }
    index.close()


def test_missing_key_has_no_score_and_no_lineage(published: Scores) -> None:
    assert published.get("C99999999") == Score(key=("C99999999",), score=None, freshness="missing")


# ---------------------------------------------------------------- bad keys


@pytest.mark.reliability
@pytest.mark.parametrize(
    "key",
    [("C1", "C2"), (), 1.5, None, True, b"C1", {"customer_id": "C1"}, ["C1", 2]],
    ids=["two-values", "no-value", "float", "none", "bool", "bytes", "dict", "list-of-two"],
)
@pytest.mark.reliability
def test_wrong_arity_or_type_names_the_use_case_and_key(published: Scores, key: object) -> None:
    with pytest.raises(ValueError, match=r"use case 'churn' has key customer_id \(string\)"):
        published.get(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use case 'churn' has key customer_id \(string\)"):
        published.get_many([KEYS[0], key])  # type: ignore[list-item]


@pytest.mark.reliability
@pytest.mark.parametrize(
    "key",
    [("C1",), ("C1", 1, 2), ("C1", "one"), ("C1", 1.0), ("C1", "1" * 30), ("C1", None)],
    ids=["short", "long", "text-not-a-number", "float", "too-many-digits", "none"],
)
def test_wrong_composite_key_names_every_key_column(
    fresh_settings: Settings, composite: UseCase, key: tuple[Any, ...]
) -> None:
    publish(fresh_settings, composite, [("C1", 1, 0.1)])
    with pytest.raises(
        ValueError,
        match=r"use case 'churn_by_product' has key customer_id \(string\), product \(int\)",
    ):
        Scores(composite, fresh_settings).get(key)


@contextmanager
def files_opened() -> Iterator[list[str]]:
    """Paths Python opens while the block runs (audit events; the hook stays, recording nothing after)."""
    opened: list[str] = []
    recording = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if recording and event in {"open", "os.listdir", "os.scandir"}:
            opened.append(str(args[0]))

    sys.addaudithook(hook)
    try:
        yield opened
    finally:
        recording = False


@pytest.mark.reliability
@pytest.mark.parametrize(
    "key",
    [
        "C00000001' or '1'='1",
        "'; drop table predictions; --",
        "../../../../etc/passwd",
        "/etc/passwd",
        "current.duckdb",
        "C00000001\x00",
        "C00000001\x00\x00\x00\x00\x00",
        "C0000000",
        "C000000011",
        "%s%n",
        "C" * 10_000_000,
        "\udcff",
    ],
    ids=[
        "sql-or",
        "sql-drop",
        "path-up",
        "path-absolute",
        "state-file",
        "nul-suffix",
        "nul-padding",
        "prefix",
        "extension",
        "format",
        "huge",
        "lone-surrogate",
    ],
)
@pytest.mark.reliability
def test_hostile_keys_are_missing_without_touching_files(published: Scores, key: str) -> None:
    published.get(KEYS[0])  # the key file is open before the block
    with files_opened() as opened:
        one, many = published.get(key), published.get_many([key, KEYS[1]])
    assert (one.score, one.freshness) == (None, "missing")
    assert [s.freshness for s in many] == ["missing", "fresh"]
    assert opened == []


# ---------------------------------------------------------------- snapshots and swaps


def test_no_snapshot_raises_snapshot_not_found(fresh_settings: Settings, churn: UseCase) -> None:
    with pytest.raises(SnapshotNotFoundError, match=r"use case 'churn'.*run publish first"):
        Scores(churn, fresh_settings).get("C1")


def test_snapshot_property_and_sample_keys_still_answer(published: Scores) -> None:
    assert published.snapshot == snapshot.snapshot_path(
        published.settings, published.usecase, RUN_DATE, 1
    )
    assert published.snapshot.exists()
    assert published.sample_keys(3) == [(KEYS[0],), (KEYS[1],), (KEYS[2],)]


@pytest.mark.reliability
def test_a_failed_key_file_leaves_no_snapshot(fresh_settings: Settings, churn: UseCase) -> None:
    """The key file is written before the snapshot's rename: no snapshot exists without one."""
    with pytest.raises(ValueError, match=r"column 'valid_until' has 1 nulls"):
        build(
            fresh_settings,
            churn,
            [("C1", 0.1), ("C2", 0.2)],
            1,
            valid_until=pa.array([VALID_UNTIL, None], pa.timestamp("us")),
        )
    built = snapshot.snapshot_path(fresh_settings, churn, RUN_DATE, 1)
    assert not built.exists()
    assert not keyindex.key_file(built).exists()
    assert list(built.parent.iterdir()) == []  # no partial file left behind either


def test_prune_removes_snapshots_with_their_key_files(
    fresh_settings: Settings, churn: UseCase
) -> None:
    old = build(fresh_settings, churn, [("C1", 0.1)], 1)
    new = publish(fresh_settings, churn, [("C1", 0.2)], 2)
    snapshot.prune_snapshots(fresh_settings, churn, keep={new.name})
    assert not old.exists() and not keyindex.key_file(old).exists()
    assert new.exists() and keyindex.key_file(new).exists()


def mapped_key_files(folder: Path) -> set[str]:
    """Key files under `folder` this process has memory-mapped right now (none: they are read)."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if line.rstrip().endswith(keyindex.SUFFIX)}
    return {p for p in paths if p.startswith(str(folder))}


@pytest.mark.reliability
def test_hot_swap_answers_from_one_whole_snapshot_and_maps_no_file(
    fresh_settings: Settings, churn: UseCase
) -> None:
    """A reader looping get and get_many while the pointer moves A -> B -> A ... sees only A or B."""
    first = build(fresh_settings, churn, [(k, 0.1) for k in KEYS], 1)
    second = build(fresh_settings, churn, [(k, 0.9) for k in KEYS[:150]], 2)  # 50 keys gone in B
    versions = {"1": (first, 0.1, len(KEYS)), "2": (second, 0.9, 150)}
    point_current_to(fresh_settings, churn, first)
    scores = Scores(churn, fresh_settings)
    seen: set[str] = set()
    failures: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                batch = scores.get_many(KEYS)
                found = [s for s in batch if s.freshness != "missing"]
                version = found[0].model_version
                assert version is not None
                _, score, count = versions[version]
                assert {(s.model_version, s.score) for s in found} == {(version, score)}
                assert len(found) == count
                one = scores.get(KEYS[0])
                assert (one.model_version, one.score) in {("1", 0.1), ("2", 0.9)}
                seen.add(version)
            except Exception as exc:  # any error at all fails the test, with what it was
                failures.append(repr(exc))
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for flip in range(200):
            point_current_to(fresh_settings, churn, second if flip % 2 == 0 else first)
            threading.Event().wait(0.002)
    finally:
        done.set()
        reader.join()
    assert failures == []
    assert seen == {"1", "2"}

    point_current_to(fresh_settings, churn, second)
    assert scores.get(KEYS[0]).model_version == "2"
    gc.collect()
    # Read into memory, never mapped: a file truncated under a mapping would kill the process.
    assert mapped_key_files(fresh_settings.state_dir) == set()
    scores.close()


# ---------------------------------------------------------------- damaged files (issue 17)


def rewrite_key_file(path: Path, **changes: pa.Array) -> None:
    """Rewrite a key file with some columns replaced, its metadata kept: a damaged file that
    still parses as Arrow."""
    with pa.OSFile(str(path)) as source:
        batch = pa.ipc.open_file(source).get_batch(0)
    columns = {name: changes.get(name, batch.column(name)) for name in batch.schema.names}
    damaged = pa.RecordBatch.from_pydict(columns).replace_schema_metadata(batch.schema.metadata)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, damaged.schema) as writer:
        writer.write_batch(damaged)


@pytest.mark.reliability
@pytest.mark.parametrize(
    "bucket_start",
    [
        list(range(len(KEYS) - 1, -1, -1)),  # out of order
        [0] * (len(KEYS) - 1) + [10**9],  # past the last row
        [5] * len(KEYS),  # not from row 0: the first rows could never be found
    ],
    ids=["out-of-order", "past-the-end", "not-from-row-0"],
)
def test_a_key_file_with_a_damaged_bucket_directory_is_unreadable_never_a_wrong_answer(
    fresh_settings: Settings, churn: UseCase, bucket_start: list[int]
) -> None:
    snapshot = publish(fresh_settings, churn, [(k, i / 1000) for i, k in enumerate(KEYS)])
    path = keyindex.key_file(snapshot)
    rewrite_key_file(path, bucket_start=pa.array(bucket_start, pa.int64()))
    with pytest.raises(SnapshotUnreadableError, match=re.escape(path.name)):
        Scores(churn, fresh_settings).get_many(KEYS)


@pytest.mark.reliability
def test_a_served_key_file_deleted_or_replaced_after_open_stops_answering_until_whole(
    fresh_settings: Settings, churn: UseCase
) -> None:
    snapshot = publish(fresh_settings, churn, [(k, i / 1000) for i, k in enumerate(KEYS)])
    path = keyindex.key_file(snapshot)
    whole = path.read_bytes()
    scores = Scores(churn, fresh_settings, check_every=0)  # checks the files at every call
    assert scores.get(KEYS[7]).score == 0.007
    path.unlink()
    for _ in range(2):  # and again: the reason is kept, not re-read
        with pytest.raises(SnapshotDamagedError, match=r"2026-11-05-v1\.duckdb changed on disk"):
            scores.get(KEYS[7])
        with pytest.raises(SnapshotDamagedError):
            scores.get_many(KEYS[:3])
    path.write_bytes(whole[: len(whole) // 2])  # a half copy over it
    with pytest.raises(SnapshotDamagedError, match="cannot read the key file"):
        scores.get(KEYS[7])
    path.write_bytes(whole)  # whole again: the same snapshot answers again
    assert scores.get(KEYS[7]).score == 0.007
    snapshot.unlink()  # the DuckDB file is part of the snapshot too
    with pytest.raises(SnapshotDamagedError, match="missing"):
        scores.get(KEYS[7])
    # A publish (the link moves) cures it.
    fixed = publish(fresh_settings, churn, [(k, 0.5) for k in KEYS], 2)
    assert scores.get(KEYS[7]).score == 0.5
    assert scores.check_served() == fixed.name


@pytest.mark.reliability
def test_a_key_file_of_another_run_date_copied_over_the_served_one_is_refused(
    fresh_settings: Settings, churn: UseCase
) -> None:
    built = publish(fresh_settings, churn, [(k, 0.1) for k in KEYS])
    other = snapshot.snapshot_path(fresh_settings, churn, RUN_DATE - timedelta(days=1), 9)
    parquet = write_predictions(fresh_settings.state_dir / "o.parquet", churn, [("C1", 0.9)], "9")
    snapshot.build_snapshot(
        other,
        parquet_files=[str(parquet)],
        run_date=RUN_DATE - timedelta(days=1),
        keys=churn.published_keys,
        views={},
    )
    scores = Scores(churn, fresh_settings, check_every=0)
    assert scores.get(KEYS[0]).score == 0.1
    shutil.copyfile(keyindex.key_file(other), keyindex.key_file(built))
    with pytest.raises(SnapshotDamagedError, match="holds run date 2026-11-04"):
        scores.get("C1")


# ---------------------------------------------------------------- the command


def test_prescore_lookup_prints_each_keys_score_and_reasons(
    fresh_settings: Settings, churn: UseCase
) -> None:
    """--json: one parsable line per key, reasons as objects; without it, one line per key with
    its reasons after `why:`."""
    reasons = [[{"feature": "plan", "contribution": i / 100, "value": "basic"}] for i in range(200)]
    rows = [(k, i / 1000) for i, k in enumerate(KEYS)]
    publish(fresh_settings, churn, rows, reasons=pa.array(reasons, reasons_type()))
    env = {
        **os.environ,
        "PRESCORE_ENV": "test",
        "PRESCORE_STATE_DIR": str(fresh_settings.state_dir),
    }
    prescore = str(Path(sys.executable).with_name("prescore"))
    lookup = [prescore, "lookup", "--usecase", "churn", KEYS[42], "C99999999"]
    done, text = (
        subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        for command in ([*lookup, "--json"], lookup)
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # JSON lines only
    assert [line["key"] for line in lines] == [[KEYS[42]], ["C99999999"]]
    assert lines[0]["score"] == pytest.approx(0.042)
    assert (lines[0]["model_version"], lines[0]["run_date"]) == ("1", RUN_DATE.isoformat())
    assert lines[0]["reasons"] == [{"feature": "plan", "contribution": 0.42, "value": "basic"}]
    assert (lines[1]["score"], lines[1]["freshness"], lines[1]["reasons"]) == (
        None,
        "missing",
        None,
    )
    assert "2026-11-05-v1.duckdb" in done.stderr  # the snapshot answered from, beside the data
    assert text.returncode == 0, text.stderr
    found, missing = text.stdout.splitlines()[1:]
    assert KEYS[42] in found and "score= 0.0420" in found and "why: plan=basic (+0.42)" in found
    assert "C99999999" in missing and "missing" in missing and "why" not in missing


def test_between_checks_a_deleted_served_file_is_answered_from_memory_then_refused(
    fresh_settings: Settings, churn: UseCase
) -> None:
    """The files are stat'ed at most every check_every seconds: until then the answers come
    whole from the copy read at open, never from the damaged file."""
    snapshot = publish(fresh_settings, churn, [(k, i / 1000) for i, k in enumerate(KEYS)])
    scores = Scores(churn, fresh_settings, check_every=0.5)
    assert scores.get(KEYS[3]).score == 0.003
    keyindex.key_file(snapshot).unlink()
    assert scores.get(KEYS[3]).score == 0.003  # within the interval: from memory
    time.sleep(0.6)
    with pytest.raises(SnapshotDamagedError):
        scores.get(KEYS[3])
    with pytest.raises(SnapshotDamagedError):
        scores.check_served()  # readiness always checks


@pytest.mark.reliability
def test_a_served_duckdb_file_truncated_in_place_stops_the_lookups_too(
    fresh_settings: Settings, churn: UseCase
) -> None:
    """The DuckDB file is half of the snapshot (SQL readers use it): cut in place while the key
    file stays whole, the client stops answering rather than serve a snapshot SQL cannot read."""
    snapshot = publish(fresh_settings, churn, [(k, i / 1000) for i, k in enumerate(KEYS)])
    scores = Scores(churn, fresh_settings, check_every=0)
    assert scores.get(KEYS[3]).score == 0.003
    os.truncate(snapshot, snapshot.stat().st_size // 2)
    with pytest.raises(SnapshotDamagedError, match=f"cannot read .*{snapshot.name}"):
        scores.get(KEYS[3])
