"""`prescore init`: roles proposed from a sample, on a public data set and on a file with every
kind of column, and the files the command writes (they load; they are never overwritten)."""

from __future__ import annotations

import bz2
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import statsmodels

from prescore.config import load_settings, load_usecase
from prescore.data.scaffold import ScaffoldError, propose, read_sample, repeated_keys
from prescore.data.validation import load_suite

pytestmark = pytest.mark.unit
PRESCORE = str(Path(sys.executable).with_name("prescore"))
# A public data set shipped inside a package from PyPI: travel mode choices, one row per person
# and mode (a composite key), `;`-separated, a 0/1 label.
MODECHOICE = Path(statsmodels.__file__).parent / "datasets" / "modechoice" / "modechoice.csv"

CUSTOMERS = """customer_id,email,phone,comments,plan,signup_date,updated_at,amount,churned
c1,ann@example.com,+44 20 7946 0018,"Called twice about the invoice, wants a discount",basic,2024-01-05,2026-11-01 10:00:00,12.5,0
c2,bob@example.org,+44 20 7946 0019,"Moved house last spring and asked for a new router",premium,2024-02-11,2026-11-01 11:00:00,NA,1
c3,cy@example.net,+44 20 7946 0020,"No contact since signing up, pays by card every month",basic,2024-03-17,2026-11-01 12:00:00,7.25,0
c4,di@example.com,+44 20 7946 0021,"Complained about the speed in the evenings, twice",standard,2024-04-23,2026-11-01 13:00:00,30,1
"""


@pytest.fixture
def customers(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS)
    return path


def test_a_public_csv_gets_its_delimiter_types_composite_key_and_binary_task() -> None:
    sample = read_sample(MODECHOICE)
    assert (sample.format, sample.options, sample.rows) == ("csv", {"sep": ";"}, 840)
    assert {c.kind for c in sample.columns} == {"int"}
    proposal = propose(sample, label="choice", keys=["individual", "mode"])
    assert proposal.task == "binary"
    assert proposal.numeric == ["ttme", "invc", "invt", "gc", "hinc", "psize"]
    assert repeated_keys(sample, proposal.keys) == 0
    assert repeated_keys(sample, ["individual"]) == 840 - 210  # four modes per person


def test_every_kind_of_column_gets_a_role_and_a_reason(customers: Path) -> None:
    sample = read_sample(customers)
    assert sample.column("amount").nulls == 1  # NA is missing, not text
    assert sample.column("amount").kind == "double"
    proposal = propose(sample, label="churned", keys=None)
    assert proposal.keys == ["customer_id"]  # the one unique column named *id
    assert (proposal.task, proposal.event_time) == ("binary", "updated_at")
    assert {name: method for name, (method, _) in proposal.pii.items()} == {
        "email": "hash",  # by its values (and its name)
        "phone": "hash",
        "comments": "drop",
    }
    assert "e-mail" in proposal.pii["email"][1]
    assert proposal.categorical == {"plan": ["basic", "premium", "standard"]}
    assert proposal.numeric == ["amount"]
    assert proposal.left_out == {
        "signup_date": "a date: derive features from it with derive: if useful"
    }


def test_a_compressed_file_and_a_number_column_with_a_few_other_values(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv.bz2"
    lines = ["id,reading,label"] + [
        f"r{i},{'?' if i in (7, 30) else i * 0.5},{i % 2}" for i in range(60)
    ]
    with bz2.open(path, "wt") as out:
        out.write("\r\n".join(lines) + "\r\n")
    sample = read_sample(path)
    reading = sample.column("reading")
    assert (sample.format, reading.kind, reading.not_numbers, reading.not_number_rows) == (
        "csv",
        "double",
        ("?",),
        2,
    )
    assert (reading.minimum, reading.maximum) == (0.0, 29.5)
    proposal = propose(sample, label="label", keys=["id"])
    assert proposal.numeric == ["reading"]
    assert any("reading: 2 of 60 sample values are not numbers ('?')" in n for n in proposal.notes)
    with pytest.raises(ScaffoldError, match=r"data\.parquet\.gz: not a \.csv, \.parquet"):
        read_sample(tmp_path / "data.parquet.gz")


def test_codes_phones_keys_and_labels_with_a_few_other_values_are_not_taken_for_numbers(
    tmp_path: Path,
) -> None:
    """Only a plain measure becomes a number column to quarantine from: a code keeps its
    leading zeros, a phone column stays PII, a key stays text and a 0/1 label stays binary."""
    path = tmp_path / "accounts.csv"
    rows = ["account,postcode,phone,visits,churned"]
    for i in range(60):
        odd = i in (7, 30)
        phone = "555-0100" if odd else str(5550100 + i)
        rows.append(
            f"{'n/a' if odd else 1000 + i},{'?' if odd else f'0{2100 + i}'},{phone},"
            f"{'?' if odd else i},{'?' if i == 7 else i % 2}"
        )
    path.write_text("\n".join(rows) + "\n")
    sample = read_sample(path)
    assert {c.name: c.kind for c in sample.columns} == {
        "account": "int",  # a number but for two: the key is declared text below
        "postcode": "string",  # leading zeros: a code
        "phone": "string",  # its name says PII, and so do the other values
        "visits": "int",
        "churned": "int",
    }
    proposal = propose(sample, label="churned", keys=["account"])
    assert proposal.task == "binary"
    assert proposal.as_text == ["account"]
    assert proposal.pii["phone"][0] == "hash"
    assert proposal.quarantined == ["visits", "churned"]


def test_what_cannot_be_guessed_is_asked_for_by_name(customers: Path) -> None:
    sample = read_sample(customers)
    with pytest.raises(ScaffoldError, match=r"name the label with --label .*'churned'"):
        propose(sample, label=None, keys=None)
    with pytest.raises(ScaffoldError, match=r"label 'plan' is string .*derive one"):
        propose(sample, label="plan", keys=None)
    with pytest.raises(ScaffoldError, match=r"no column 'customer' \(columns: customer_id"):
        propose(sample, label="churned", keys=["customer"])
    with pytest.raises(ScaffoldError, match=r"not a \.csv, \.parquet or \.json file"):
        read_sample(customers.with_suffix(".xlsx"))


def test_init_writes_a_use_case_that_loads_and_never_overwrites_one(
    customers: Path, tmp_path: Path
) -> None:
    """`prescore init` as a user runs it, on a conf folder of its own."""
    conf = tmp_path / "conf"
    (conf / "usecases").mkdir(parents=True)
    base = Path(load_settings().conf_dir, "base.yaml").read_text()
    (conf / "base.yaml").write_text(f"{base}\nexpectations_dir: {tmp_path / 'expectations'}\n")
    env = {**os.environ, "PRESCORE_CONF_DIR": str(conf), "PRESCORE_STATE_DIR": str(tmp_path / "s")}
    command = [PRESCORE, "init", "--usecase", "accounts", "--from", str(customers)]
    done = subprocess.run([*command, "--label", "churned"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads(done.stdout)
    assert written["usecase"] == str(conf / "usecases" / "accounts.yaml")
    assert "prescore check --usecase accounts" in done.stderr

    settings = load_settings(conf_dir=conf)
    usecase = load_usecase("accounts", settings)
    assert (usecase.keys, usecase.label, usecase.task) == (["customer_id"], "churned", "binary")
    assert set(usecase.pii) == {"email", "phone", "comments"}
    suite = load_suite(Path(written["suite"]))
    assert suite.name == "raw_accounts"
    assert not (tmp_path / "s").exists()  # nothing of the state is touched

    again = subprocess.run(
        [*command, "--label", "churned"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 1
    assert "accounts.yaml" in again.stderr and "--force" in again.stderr
