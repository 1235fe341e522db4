"""Config identity and SQL names: a use case is the file it is named after, alone on its entity,
and a name never runs as SQL.

- `--usecase` and load_usecase refuse anything but a use-case name before any path is built.
- Two use cases on one entity (one set of raw/clean/quarantine tables) are refused naming both
  files; the other use cases still load, and a sibling file that does not parse breaks nothing.
- Every statement built from a name quotes it: hostile column and view names, through a real
  snapshot build on DuckDB, become plain columns and views; nothing in them runs.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prescore.cli import main
from prescore.config import (
    DEFAULT_CONF_DIR,
    ConfigError,
    load_settings,
    load_usecase,
    load_usecases,
)
from prescore.identifiers import quote_identifier, quote_literal
from prescore.serving import snapshot
from prescore.serving.http import create_app
from support import running

pytestmark = pytest.mark.reliability

HOSTILE_NAMES = [
    'x" , (select 42) as "y',
    'a""b',
    "c'); select 42; --",
    "select",
    "1; drop table t",
    "with space",
    "naïve ✓",
    "`back`tick`",
]


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    return target


def _churn_text(**changes: str) -> str:
    text = (DEFAULT_CONF_DIR / "usecases" / "churn.yaml").read_text()
    for key, value in changes.items():
        line = next(s for s in text.splitlines() if s.startswith(f"{key}: "))
        text = text.replace(line, f"{key}: {value}")
    return text


# ---------------------------------------------------------------- use-case names and paths


@pytest.mark.parametrize(
    "name", ["../../x", "../x", "/etc/passwd", "churn/../churn", "Churn", "churn.yaml", "a" * 41]
)
def test_usecase_argument_refuses_anything_but_a_name(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lookup", "--usecase", name, "42"])
    assert exited.value.code == 2  # argparse: refused before any command runs
    assert f"argument --usecase: {name!r} is not a use-case name" in capsys.readouterr().err


def test_load_usecase_never_reads_outside_conf_usecases(conf_dir: Path) -> None:
    """A valid use-case file one folder up is not reachable by `../`."""
    (conf_dir / "outside.yaml").write_text(_churn_text(name="outside", entity="outsiders"))
    settings = load_settings(conf_dir)
    for name in ("../outside", "../usecases/../outside", str(conf_dir / "outside")):
        with pytest.raises(ConfigError, match=r"is not a use-case name") as caught:
            load_usecase(name, settings)
        assert "outside.yaml" not in str(caught.value)


# ---------------------------------------------------------------- one use case per entity


def test_two_usecases_on_one_entity_are_refused_naming_both(conf_dir: Path) -> None:
    usecases = conf_dir / "usecases"
    (usecases / "upsell.yaml").write_text(_churn_text(name="upsell"))  # entity: customers
    settings = load_settings(conf_dir)

    for name, other in (("churn", "upsell"), ("upsell", "churn")):
        with pytest.raises(ConfigError) as caught:
            load_usecase(name, settings)
        message = str(caught.value)
        assert message.startswith(f"{usecases / name}.yaml: entity: 'customers'")
        assert f"also the entity of {usecases / other}.yaml" in message
        assert "raw_customers" in message
    assert load_usecase("forecast", settings).entity == "sales"  # not involved: loads

    loaded = load_usecases(settings)
    assert sorted(loaded.usecases) == ["forecast"]
    assert sorted(p.name for p in loaded.errors) == ["churn.yaml", "upsell.yaml"]


def test_a_sibling_that_does_not_parse_breaks_no_other_usecase(conf_dir: Path) -> None:
    usecases = conf_dir / "usecases"
    (usecases / "broken.yaml").write_text("entity: customers\nkeys: [unclosed\n")
    (usecases / "binary.yaml").write_bytes(b"\xff\xfe\x00 not text")
    settings = load_settings(conf_dir)

    assert load_usecase("churn", settings).entity == "customers"
    loaded = load_usecases(settings)
    assert sorted(loaded.usecases) == ["churn", "forecast"]
    errors = {path.name: str(error) for path, error in loaded.errors.items()}
    assert sorted(errors) == ["binary.yaml", "broken.yaml"]
    assert errors["broken.yaml"].startswith(f"{usecases / 'broken.yaml'}: not valid YAML")
    assert errors["binary.yaml"].startswith(f"{usecases / 'binary.yaml'}: cannot be read as UTF-8")


# ---------------------------------------------------------------- names in SQL


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_quote_identifier_makes_a_hostile_name_a_plain_column(name: str) -> None:
    with duckdb.connect() as con:
        con.execute(f"create table t ({quote_identifier(name)} integer)")
        con.execute("insert into t values (7)")
        assert [row[0] for row in con.execute("describe t").fetchall()] == [name]
        assert con.execute(f"select {quote_identifier(name)} from t").fetchall() == [(7,)]
        assert con.execute(f"select {quote_literal(name)}").fetchall() == [(name,)]


def test_quoting_refuses_a_nul_character() -> None:
    with pytest.raises(ValueError, match="NUL"):
        quote_identifier("a\x00b")


def test_a_snapshot_built_from_hostile_column_names_runs_none_of_them(tmp_path: Path) -> None:
    """A predictions file whose key, value and constant columns carry SQL: the snapshot holds
    those exact columns and values, and a view named with SQL is just a view of that name."""
    key, varying, constant = 'id" , (select 42) as "x', 'v"" , 42 as ""w', "c'); select 42 --"
    at = datetime(2026, 11, 1, 6, 0)
    table = pa.table(
        {
            key: ["a", "b", "c"],
            "score": [0.1, 0.2, 0.3],
            "scored_at": pa.array([at] * 3, pa.timestamp("us")),
            "valid_until": pa.array([at] * 3, pa.timestamp("us")),
            "model_name": ["m"] * 3,
            "model_version": ["3"] * 3,
            varying: [1.5, 2.5, 3.5],
            constant: ["it's"] * 3,
        }
    )
    parquet = tmp_path / "part-0.parquet"
    pq.write_table(table, parquet)
    view = 'v"; drop table predictions; --'
    target = tmp_path / "snapshot.duckdb"

    rows = snapshot.build_snapshot(
        target,
        parquet_files=[str(parquet)],
        run_date=date(2026, 11, 1),
        keys=[key],
        views={view: "select * from predictions"},
    )

    assert rows == 3
    with duckdb.connect(str(target), read_only=True) as con:
        columns = [row[0] for row in con.execute("describe predictions").fetchall()]
        assert columns == [*table.column_names, "run_date"]
        picked = ", ".join(quote_identifier(c) for c in (key, varying, constant))
        assert con.execute(f"select {picked} from predictions order by 1").fetchall() == [
            ("a", 1.5, "it's"),
            ("b", 2.5, "it's"),
            ("c", 3.5, "it's"),
        ]
        views = con.execute("select view_name from duckdb_views() where not internal").fetchall()
        assert views == [(view,)]
        assert con.execute(f"select count(*) from {quote_identifier(view)}").fetchone() == (3,)


def test_the_server_answers_the_valid_usecases_while_a_broken_file_sits_beside_them(
    conf_dir: Path, tmp_path: Path
) -> None:
    """One invalid use-case file costs the HTTP service only that use case."""
    (conf_dir / "usecases" / "x.yaml").write_text("name: x\nentity: [not, a, name]\n")
    settings = load_settings(conf_dir, env="test").model_copy(
        update={"state_dir": tmp_path / "state"}
    )
    with running(create_app(settings)) as http:
        ready = http.get("/readyz").json()
        assert set(ready["usecases"]) == {"churn", "forecast"}
        assert http.get("/v1/x/scores/a").status_code == 404
        assert http.get("/v1/churn/scores/a").status_code == 503  # nothing published yet
