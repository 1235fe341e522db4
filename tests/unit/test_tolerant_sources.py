"""Tolerant sources (issue 18): undeclared columns left out, null_values read as missing, text
that does not parse kept as a bad value, and clean's reason for it."""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError
from pyspark.sql import SparkSession

from prescore.catalog import BAD_VALUES, BAD_VALUES_TYPE
from prescore.config import (
    DEFAULT_CONF_DIR,
    DEFAULT_NULL_VALUES,
    ConfigError,
    SourceSettings,
    load_settings,
    load_usecase,
)
from prescore.data.cleaning import REASON, flag_invalid_rows, quarantine_rows
from prescore.data.sources import (
    SourceSchemaError,
    check_columns,
    check_csv_header,
    describe_bad_values,
    landing_files,
    parse_text,
)

pytestmark = pytest.mark.unit
DECLARED = {"id": "string", "age": "int", "amount": "double", "seen": "date"}


def source(**fields: object) -> SourceSettings:
    return SourceSettings.model_validate(
        {"format": "csv", "path": "p", "schema": DECLARED, **fields}
    )


def test_source_defaults_keep_todays_strictness() -> None:
    settings = source()
    assert settings.columns == "declared" and settings.on_bad_value == "fail"
    assert settings.null_values == list(DEFAULT_NULL_VALUES) == ["", "NA", "NaN", "null"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "parquet", "null_values": ["NA"]}, "null_values only apply to formats csv"),
        ({"format": "delta", "on_bad_value": "quarantine"}, "quarantine only applies to formats"),
        ({"columns": "some"}, "columns"),
        ({"on_bad_value": "skip"}, "on_bad_value"),
    ],
)
def test_tolerance_options_are_checked_at_load(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        source(**fields)


def test_missing_column_is_refused_even_when_undeclared_ones_are_ignored() -> None:
    check_columns(
        "f.csv", ["id", "age", "amount", "seen", "extra"], DECLARED, ignore_undeclared=True
    )
    with pytest.raises(SourceSchemaError, match=r"f\.csv: unexpected column\(s\) \['extra'\]"):
        check_columns("f.csv", ["id", "age", "amount", "seen", "extra"], DECLARED)
    with pytest.raises(SourceSchemaError, match=r"f\.csv: missing column\(s\) \['seen'\]"):
        check_columns("f.csv", ["id", "age", "amount", "extra"], DECLARED, ignore_undeclared=True)


def test_csv_header_is_returned_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("seen;extra;amount;age;id\n2026-01-01;x;1.5;3;a\n")
    header = check_csv_header(path, DECLARED, delimiter=";", ignore_undeclared=True)
    assert header == ["seen", "extra", "amount", "age", "id"]


def test_compressed_landing_files_are_found_and_their_header_read(tmp_path: Path) -> None:
    text = "id,age,amount,seen\r\na,3,1.5,2026-01-01\r\n"
    (tmp_path / "a.csv").write_text(text)
    with gzip.open(tmp_path / "b.csv.gz", "wt") as out:
        out.write(text)
    with bz2.open(tmp_path / "c.csv.bz2", "wt") as out:
        out.write(text)
    (tmp_path / "notes.txt.gz").write_bytes(b"")  # not the source's format: not a landing file
    files = landing_files(tmp_path, source())
    assert [p.name for p in files] == ["a.csv", "b.csv.gz", "c.csv.bz2"]
    assert [check_csv_header(p, DECLARED) for p in files] == [["id", "age", "amount", "seen"]] * 3


def test_a_damaged_or_misnamed_compressed_file_is_refused_naming_it(tmp_path: Path) -> None:
    text = "id,age,amount,seen\na,3,1.5,2026-01-01\n"
    (tmp_path / "plain.csv.gz").write_text(text)  # named gzip, is not
    with bz2.open(tmp_path / "cut.csv.bz2", "wt") as out:
        out.write(text * 200)
    whole = (tmp_path / "cut.csv.bz2").read_bytes()
    (tmp_path / "cut.csv.bz2").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "latin.csv").write_bytes(
        "id,age,amount,seen\nJos\xe9,3,1.5,2026-01-01\n".encode("latin-1")
    )
    for name, reason in [
        ("plain.csv.gz", "Not a gzipped file"),
        ("cut.csv.bz2", "ended before the end-of-stream marker"),
        ("latin.csv", "can't decode byte"),
    ]:
        with pytest.raises(
            SourceSchemaError, match=rf"{name}: cannot be read as UTF-8 text: .*{reason}"
        ):
            check_csv_header(tmp_path / name, DECLARED)


def text_frame(spark: SparkSession, rows: list[tuple[str | None, ...]]):
    return spark.createDataFrame(
        rows, ", ".join(f"{c} string" for c in [*DECLARED, "_source_file"])
    )


def test_text_is_parsed_to_declared_types_with_null_values_and_bad_values(
    spark: SparkSession,
) -> None:
    rows = [
        ("a", "34", "1.5", "2026-01-02", "r1"),
        ("NA", " NA ", "NaN", "null", "r2"),  # every spelling of missing, and padded
        ("c", "", None, "", "r3"),
        ("d", "3.5", "abc", "2026-13-40", "r4"),  # three values that do not parse
        ("e", "NULL", "nan", "2026-01-03", "r5"),  # null_values are matched exactly
    ]
    parsed = parse_text(
        text_frame(spark, rows), declared=DECLARED, null_values=["", "NA", "NaN", "null"]
    )

    assert dict(parsed.dtypes) == {
        "id": "string",
        "age": "int",
        "amount": "double",
        "seen": "date",
        "_source_file": "string",
        BAD_VALUES: BAD_VALUES_TYPE,
    }
    got = {r["_source_file"]: r for r in parsed.collect()}
    first, missing, empty, bad, case = (got[f"r{i}"] for i in range(1, 6))
    assert (first.id, first.age, first.amount, first.seen) == ("a", 34, 1.5, date(2026, 1, 2))
    assert first[BAD_VALUES] is None
    assert (missing.id, missing.age, missing.amount, missing.seen, missing[BAD_VALUES]) == (
        None,
    ) * 5
    assert (empty.age, empty.amount, empty.seen, empty[BAD_VALUES]) == (None,) * 4
    assert (bad.age, bad.amount, bad.seen) == (None, None, None)
    assert bad[BAD_VALUES] == {"age": "3.5", "amount": "abc", "seen": "2026-13-40"}
    # "NULL" is not in the list (not an int); "nan" is: Spark reads it as a double NaN
    assert case[BAD_VALUES] == {"age": "NULL"}
    assert case.amount != case.amount


def test_without_null_values_an_empty_number_is_a_bad_value(spark: SparkSession) -> None:
    parsed = parse_text(
        text_frame(spark, [("", "", "NA", "2026-01-01", "f.csv")]),
        declared=DECLARED,
        null_values=[],
    )
    row = parsed.first()
    assert row is not None
    assert row.id == "" and row[BAD_VALUES] == {"age": "", "amount": "NA"}


def test_bad_values_are_described_in_declared_order_hiding_pii() -> None:
    found = {"seen": "x", "age": "3.5"}
    assert describe_bad_values(found, DECLARED) == (
        "column 'age' value '3.5' is not int, column 'seen' value 'x' is not date"
    )
    assert describe_bad_values(found, DECLARED, hidden={"age"}) == (
        "column 'age' value (PII, not shown) is not int, column 'seen' value 'x' is not date"
    )


def raw_frame(spark: SparkSession):
    return spark.createDataFrame(
        [
            ("a", 34, 1.5, None, "f.csv", date(2026, 1, 1)),
            ("b", None, None, {"age": "3.5", "amount": "abc"}, "g.csv", date(2026, 1, 1)),
            (None, None, 2.0, {"age": "x"}, "g.csv", date(2026, 1, 1)),  # before the null key
        ],
        f"id string, age int, amount double, {BAD_VALUES} {BAD_VALUES_TYPE}, "
        "_source_file string, run_date date",
    )


def test_a_row_with_bad_values_is_flagged_naming_column_value_and_file(
    spark: SparkSession,
) -> None:
    flagged = flag_invalid_rows(raw_frame(spark), keys=["id"], valid_range={}, declared=DECLARED)
    reasons = [r[REASON] for r in flagged.orderBy("_source_file", "id").collect()]
    assert reasons == [
        None,
        "column 'age' value 'x' is not int (file g.csv)",
        "column 'age' value '3.5' is not int, column 'amount' value 'abc' is not double (file g.csv)",
    ]


def test_a_bad_value_reason_hides_a_pii_value(spark: SparkSession) -> None:
    flagged = flag_invalid_rows(
        raw_frame(spark), keys=["id"], valid_range={}, pii={"amount"}, declared=DECLARED
    )
    reason = flagged.where("id = 'b'").first()[REASON]
    assert reason == (
        "column 'age' value '3.5' is not int, column 'amount' value (PII, not shown) is not "
        "double (file g.csv)"
    )


def test_without_declared_types_bad_values_are_not_a_rule(spark: SparkSession) -> None:
    flagged = flag_invalid_rows(raw_frame(spark).drop(BAD_VALUES), keys=["id"], valid_range={})
    assert [r[REASON] for r in flagged.orderBy("id").collect()] == ["null key id", None, None]


def test_quarantined_row_leaves_the_bad_values_to_its_reason(spark: SparkSession) -> None:
    flagged = flag_invalid_rows(raw_frame(spark), keys=["id"], valid_range={}, declared=DECLARED)
    out = quarantine_rows(flagged.where(f"{REASON} is not null"), pii={}, secret=b"k")
    rows = {r.reason: json.loads(r.raw_row) for r in out.collect()}
    assert all(BAD_VALUES not in row for row in rows.values())
    assert rows["column 'age' value 'x' is not int (file g.csv)"]["amount"] == 2.0


def test_a_text_option_on_a_typed_source_names_the_file_and_field(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    churn = conf / "usecases" / "churn.yaml"
    text = churn.read_text()
    assert "  path: churn" in text  # churn's source is parquet
    churn.write_text(text.replace("  path: churn", "  path: churn\n  null_values: [NA]", 1))
    with pytest.raises(ConfigError, match=r"churn\.yaml: source: .*null_values only apply"):
        load_usecase("churn", load_settings(conf))
