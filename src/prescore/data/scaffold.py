"""`prescore init`: a use case, and its starter suite, from a sample of one data file.

DuckDB reads the first SAMPLE_ROWS rows (its CSV sniffer finds the delimiter, the header and the
types) and sketches each column; `propose` then gives each column a role by its type, its name
and its values (keys, label and task, event time, PII, numeric or categorical feature, or left
out, each with the reason); `render_usecase` and `render_suite` write them as a commented
conf/usecases/<name>.yaml and expectations/raw_<entity>.json that `prescore check` passes. The
proposal is a start to review, not a verdict: every guess is marked in the file.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml
from pydantic import ValidationError

from prescore.catalog import raw_table
from prescore.config import (
    DEFAULT_NULL_VALUES,
    KEY_TYPES,
    CleaningSettings,
    Settings,
    UseCase,
)
from prescore.data.sources import COMPRESSIONS, TEXT_FORMATS, open_text
from prescore.identifiers import IDENTIFIER, quote_identifier, quote_literal
from prescore.platform.files import write_text_atomically

SAMPLE_ROWS = 20_000
# The share of a run's rows that may go to quarantine, by default (written in the file).
QUARANTINE_LIMIT = CleaningSettings.model_fields["max_quarantined_fraction"].default
NUMBERS_SHARE = 0.95  # a text column whose values are this much numbers is a number column
MAX_LEVELS = 50  # a text column with more distinct values is free text or an identifier
LISTED_LEVELS = 12  # more distinct values: `levels: auto`, learned with each model
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".json": "json"}

_SAFE_NAME = re.compile(IDENTIFIER)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE = r"^\+?[0-9][0-9 ().-]{6,}[0-9]$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"
# Column-name words that say a column holds personal data, and what to do with it.
_PII_WORDS = {
    "email": "hash",
    "mail": "hash",
    "phone": "hash",
    "mobile": "hash",
    "ssn": "hash",
    "name": "drop",
    "surname": "drop",
    "address": "drop",
    "street": "drop",
    "birth": "drop",
    "dob": "drop",
    "comment": "drop",
    "comments": "drop",
    "notes": "drop",
}
_LABEL_NAMES = ("label", "target", "y", "outcome", "class")
_EVENT_WORDS = ("updated", "modified", "event", "timestamp", "time", "at")


class ScaffoldError(ValueError):
    """The file cannot be read, or the roles cannot be proposed without a hint."""


@dataclass(frozen=True)
class ColumnSketch:
    """What the sample says of one column."""

    name: str
    kind: str  # a config ColumnType
    rows: int
    nulls: int
    distinct: int
    levels: tuple[str, ...] = ()  # text: the most frequent values first, up to MAX_LEVELS + 1
    minimum: float | None = None  # numbers
    maximum: float | None = None
    email_share: float = 0.0  # text: the share of values that look like an e-mail address
    phone_share: float = 0.0
    mean_length: float = 0.0
    not_numbers: tuple[str, ...] = ()  # a number column's values that are not numbers, a few
    not_number_rows: int = 0

    @property
    def values(self) -> int:
        return self.rows - self.nulls


@dataclass(frozen=True)
class Sample:
    """One data file's format, reader options and column sketches."""

    path: Path
    format: str
    options: dict[str, str]
    rows: int
    columns: list[ColumnSketch]
    table: pa.Table  # the sample rows as DuckDB read them

    def column(self, name: str) -> ColumnSketch:
        found = next((c for c in self.columns if c.name == name), None)
        if found is None:
            known = ", ".join(c.name for c in self.columns)
            raise ScaffoldError(f"{self.path}: no column {name!r} (columns: {known})")
        return found


@dataclass
class Proposal:
    """Each column's role, and why."""

    keys: list[str]
    label: str
    task: str
    event_time: str | None
    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str] | None] = field(default_factory=dict)  # None: auto
    pii: dict[str, tuple[str, str]] = field(default_factory=dict)  # column: (method, why)
    left_out: dict[str, str] = field(default_factory=dict)  # declared, not used: why
    undeclared: list[str] = field(default_factory=list)  # names no engine reads alike
    as_text: list[str] = field(default_factory=list)  # keys declared string: read as written
    notes: list[str] = field(default_factory=list)  # what to review
    quarantined: list[str] = field(default_factory=list)  # number columns with other values


# ---------------------------------------------------------------- reading the sample


def read_sample(path: Path, rows: int = SAMPLE_ROWS) -> Sample:
    """The first `rows` rows of a CSV, Parquet or JSON-lines file (a text file may be compressed:
    .gz, .bz2), sketched column by column."""
    source_format = file_format(path)
    if not path.is_file():
        raise ScaffoldError(f"{path}: file not found")
    with _head(path, rows) as readable, duckdb.connect() as con:
        options = _csv_options(readable, path) if source_format == "csv" else {}
        try:
            con.execute(
                f"create table sample as select * from {_reader(readable, source_format)} "
                f"limit {rows}"
            )
        except duckdb.Error as exc:
            said = str(exc).replace(str(readable), str(path))  # not the decompressed head's
            raise ScaffoldError(f"{path}: cannot be read as {source_format}: {said}") from None
        described = con.execute("describe sample").fetchall()
        total = _scalar(con, "select count(*) from sample")
        if total == 0:
            raise ScaffoldError(f"{path}: no rows")
        columns = [
            _sketch(con, name, str(kind), total, source_format) for name, kind, *_ in described
        ]
        table = con.table("sample").fetch_arrow_table()
    return Sample(path, source_format, options, total, columns, table)


def file_format(path: Path) -> str:
    """csv, parquet or json, by the file's name (a text format's may end in .gz or .bz2)."""
    name = path.with_suffix("") if path.suffix.lower() in COMPRESSIONS else path
    source_format = FORMATS.get(name.suffix.lower())
    if source_format is None or (name != path and source_format not in TEXT_FORMATS):
        raise ScaffoldError(
            f"{path}: not a .csv, .parquet or .json file (csv and json may end in .gz or .bz2)"
        )
    return source_format


@contextmanager
def _head(path: Path, rows: int) -> Iterator[Path]:
    """`path`, or for a compressed file its first lines decompressed into a file DuckDB reads
    (it reads no bzip2), removed on the way out."""
    if path.suffix.lower() not in COMPRESSIONS:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="prescore-init-") as folder:
        head = Path(folder) / path.with_suffix("").name
        with open_text(path) as source, head.open("w", newline="", encoding="utf-8") as target:
            target.writelines(itertools.islice(source, rows + 1))  # a CSV's header too
        yield head


def _reader(path: Path, source_format: str) -> str:
    location = quote_literal(str(path))
    if source_format == "parquet":
        return f"read_parquet({location})"
    if source_format == "json":
        return f"read_json_auto({location}, format = 'newline_delimited')"
    nulls = ", ".join(quote_literal(v) for v in DEFAULT_NULL_VALUES)
    return f"read_csv({location}, nullstr = [{nulls}], header = true)"


def _csv_options(readable: Path, path: Path) -> dict[str, str]:
    """Spark CSV options for what DuckDB's sniffer found: the delimiter, when not a comma."""
    with duckdb.connect() as con:
        try:
            delimiter = con.execute(
                "select Delimiter from sniff_csv(?)", [str(readable)]
            ).fetchone()
        except duckdb.Error as exc:
            said = str(exc).replace(str(readable), str(path))
            raise ScaffoldError(f"{path}: cannot be read as csv: {said}") from None
    sep = delimiter[0] if delimiter else ","
    return {} if sep == "," else {"sep": sep}


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def column_kind(duckdb_type: str) -> str:
    """The config column type of a DuckDB type; anything without one is read as text."""
    kind = duckdb_type.upper()
    if kind in ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"):
        return "int"
    if kind in ("BIGINT", "UINTEGER", "UBIGINT", "HUGEINT"):
        return "long"
    if kind in ("FLOAT", "DOUBLE") or kind.startswith("DECIMAL"):
        return "double"
    if kind == "BOOLEAN":
        return "boolean"
    if kind == "DATE":
        return "date"
    if kind.startswith("TIMESTAMP"):
        return "timestamp"
    return "string"


def _sketch(
    con: duckdb.DuckDBPyConnection, name: str, duckdb_type: str, rows: int, source_format: str
) -> ColumnSketch:
    column = quote_identifier(name)
    kind = column_kind(duckdb_type)
    nulls = rows - _scalar(con, f"select count({column}) from sample")
    distinct = _scalar(con, f"select count(distinct {column}) from sample")
    if kind in ("date", "timestamp") and source_format != "parquet":
        # DuckDB reads dates written in many ways; Spark casts only the ISO ones.
        iso = _scalar(
            con,
            f"select count(*) from sample where {column} is not null "
            f"and not regexp_matches(cast({column} as varchar), '{_ISO_DATE}')",
        )
        kind = kind if iso == 0 else "string"
    if kind in ("int", "long", "double"):
        low, high = con.execute(f"select min({column}), max({column}) from sample").fetchone() or (
            None,
            None,
        )
        if kind == "long" and source_format != "parquet" and _fits_int(low, high):
            kind = "int"
        return ColumnSketch(name, kind, rows, nulls, distinct, minimum=low, maximum=high)
    if kind != "string":
        return ColumnSketch(name, kind, rows, nulls, distinct)
    text = f"cast({column} as varchar)"
    if source_format != "parquet":
        numbers = _mostly_numbers(con, column, ColumnSketch(name, kind, rows, nulls, distinct))
        if numbers is not None:
            return numbers
    levels = con.execute(
        f"select {text} from sample where {column} is not null group by 1 "
        f"order by count(*) desc, 1 limit {MAX_LEVELS + 1}"
    ).fetchall()
    shares = con.execute(
        f"select avg(regexp_matches({text}, '{_EMAIL}')::int), "
        f"avg(regexp_matches({text}, '{_PHONE}')::int), avg(length({text})) "
        f"from sample where {column} is not null"
    ).fetchone() or (0, 0, 0)
    return ColumnSketch(
        name,
        kind,
        rows,
        nulls,
        distinct,
        levels=tuple(str(v[0]) for v in levels),
        email_share=float(shares[0] or 0),
        phone_share=float(shares[1] or 0),
        mean_length=float(shares[2] or 0),
    )


def _mostly_numbers(
    con: duckdb.DuckDBPyConnection, column: str, sketch: ColumnSketch
) -> ColumnSketch | None:
    """`sketch` completed when a text column holds numbers but for a few values (`.`, `?`, `n/a`:
    what a file writes for missing, or a typo), else None. Not when its name says PII, a number
    has a leading zero (a code: a postcode, an account) or another value looks like a phone
    number or an e-mail address: those stay text, for the PII rules to see."""
    if _pii_word(sketch.name):
        return None
    text = f"trim(cast({column} as varchar))"  # Spark trims a value before it parses it
    number = f"try_cast({text} as double)"
    found = con.execute(
        f"select count(*), count({number}), min({number}), max({number}), "
        f"count(*) filter (where regexp_matches({text}, '^[+-]?[0-9]+$')), "
        f"count(*) filter (where regexp_matches({text}, '^[+-]?0[0-9]')), "
        f"count(*) filter (where {number} is null and (regexp_matches({text}, '{_PHONE}') "
        f"or regexp_matches({text}, '{_EMAIL}'))) "
        f"from sample where {column} is not null and {text} <> ''"
    ).fetchone()
    if found is None:
        return None
    values, numbers, low, high, whole, codes, personal = found  # values: not blank
    if not values or not NUMBERS_SHARE * values <= numbers < values or codes or personal:
        return None
    others = con.execute(
        f"select {text} from sample where {column} is not null and {text} <> '' "
        f"and {number} is null group by 1 order by count(*) desc, 1 limit 5"
    ).fetchall()
    if whole == numbers:  # a whole number each: an int (a 0/1 label stays binary)
        low, high = int(low), int(high)
        kind = "int" if _fits_int(low, high) else "long"
    else:
        kind = "double"
    return dataclasses.replace(
        sketch,
        kind=kind,
        minimum=low,
        maximum=high,
        not_numbers=tuple(str(v[0]) for v in others),
        not_number_rows=values - numbers,
    )


def _fits_int(low: object, high: object) -> bool:
    limit = 2**31
    return isinstance(low, int) and isinstance(high, int) and -limit <= low and high < limit


def repeated_keys(sample: Sample, keys: Sequence[str]) -> int:
    """How many rows of the sample repeat an earlier row's keys."""
    columns = ", ".join(quote_identifier(k) for k in keys)
    with duckdb.connect() as con:
        con.register("sample", sample.table)
        return _scalar(con, f"select count(*) - count(distinct ({columns})) from sample")


# ---------------------------------------------------------------- proposing roles


def propose(sample: Sample, *, label: str | None, keys: Sequence[str] | None) -> Proposal:
    """Each column's role: the keys and label given (else found by name), the task from the
    label's values, then PII, features and the columns left out, each with why."""
    columns = {c.name: c for c in sample.columns}
    key_names = list(keys) if keys else _find_keys(sample)
    label_name = label or _find_label(sample)
    for name in [*key_names, label_name]:
        sample.column(name)
    if label_name in key_names:
        raise ScaffoldError(f"--label {label_name!r} is also a key")
    proposal = Proposal(
        keys=key_names,
        label=label_name,
        task=_task(sample.column(label_name)),
        event_time=_find_event_time(sample, key_names),
    )
    for name in key_names:
        key = sample.column(name)
        if key.not_numbers:
            proposal.as_text.append(name)
            proposal.notes.append(
                f"key {name} holds {key.not_number_rows} values that are not numbers in the "
                "sample: declared string, so a lookup gives it as written there"
            )
        elif key.kind not in KEY_TYPES:
            proposal.as_text.append(name)
            proposal.notes.append(
                f"key {name} is {key.kind} in the file: declared string, so a "
                f"lookup gives it as written there"
            )
    taken = {*key_names, label_name, proposal.event_time}
    for name, column in columns.items():
        if name in taken:
            continue
        if not _SAFE_NAME.fullmatch(name):
            proposal.undeclared.append(name)
        else:
            _assign(proposal, column)
    if not proposal.numeric and not proposal.categorical:
        raise ScaffoldError(f"{sample.path}: no column is usable as a feature")
    _note_values_to_quarantine(sample, proposal)
    return proposal


def _note_values_to_quarantine(sample: Sample, proposal: Proposal) -> None:
    """The declared number columns with a few other values: their rows go to quarantine."""
    parsed = [
        c
        for c in sample.columns
        if c.not_numbers and c.name not in (*proposal.as_text, *proposal.undeclared)
    ]
    proposal.quarantined = [c.name for c in parsed]
    for column in parsed:
        shown = ", ".join(repr(v) for v in column.not_numbers)
        proposal.notes.append(
            f"{column.name}: {column.not_number_rows} of {column.values} sample values are "
            f"not numbers ({shown}): declared {column.kind}, and source.on_bad_value: quarantine "
            "sends such rows to quarantine with their reason; list a value in "
            "source.null_values instead if it means missing"
        )
    share = sum(c.not_number_rows for c in parsed) / sample.rows
    if share > QUARANTINE_LIMIT / 2:
        proposal.notes.append(
            f"up to {share:.1%} of the sample's rows hold a value that is not a number: a run "
            f"with more than cleaning.max_quarantined_fraction ({QUARANTINE_LIMIT}) in "
            "quarantine fails"
        )


def _assign(proposal: Proposal, column: ColumnSketch) -> None:
    pii = _pii(column)
    if pii:
        proposal.pii[column.name] = pii
    elif column.distinct <= 1:
        proposal.left_out[column.name] = "one value in the sample"
    elif column.kind in ("int", "long", "double", "boolean"):
        proposal.numeric.append(column.name)
    elif column.kind in ("date", "timestamp"):
        proposal.left_out[column.name] = "a date: derive features from it with derive: if useful"
    elif column.distinct <= LISTED_LEVELS:
        proposal.categorical[column.name] = list(column.levels)
    elif column.distinct <= MAX_LEVELS:
        proposal.categorical[column.name] = None
    else:
        proposal.left_out[column.name] = (
            f"{column.distinct} distinct values in {column.values}: an identifier or free text"
        )


def _pii_word(name: str) -> str | None:
    """The word of a column's name that says it holds personal data, if any."""
    return next((w for w in re.split(r"[^a-z]+", name.lower()) if w in _PII_WORDS), None)


def _pii(column: ColumnSketch) -> tuple[str, str] | None:
    """(method, why) when the name or the values say the column holds personal data."""
    if column.kind != "string":
        return None
    named = _pii_word(column.name)
    if column.email_share >= 0.5:
        return "hash", f"{column.email_share:.0%} of the values look like e-mail addresses"
    if column.phone_share >= 0.5:
        return "hash", f"{column.phone_share:.0%} of the values look like phone numbers"
    if named:
        return _PII_WORDS[named], f"its name says {named!r}"
    if column.mean_length >= 25 and column.distinct > MAX_LEVELS:
        return "drop", f"free text ({column.mean_length:.0f} characters on average)"
    return None


def _find_keys(sample: Sample) -> list[str]:
    unique = [
        c.name
        for c in sample.columns
        if c.nulls == 0 and c.distinct == c.rows and c.name.lower().endswith("id")
    ]
    if len(unique) != 1:
        found = f"candidates: {unique}" if unique else "no column named *id is unique"
        raise ScaffoldError(f"{sample.path}: name the key columns with --keys A,B ({found})")
    return unique


def _find_label(sample: Sample) -> str:
    named = [c.name for c in sample.columns if c.name.lower() in _LABEL_NAMES]
    if len(named) != 1:
        numeric = [c.name for c in sample.columns if c.kind in ("int", "long", "double", "boolean")]
        raise ScaffoldError(
            f"{sample.path}: name the label with --label (numeric columns: {numeric})"
        )
    return named[0]


def _task(label: ColumnSketch) -> str:
    if label.kind == "boolean":
        return "binary"
    if label.kind in ("int", "long"):
        zero_one = label.minimum in (0, 1) and label.maximum in (0, 1)
        numbers = label.distinct - len(label.not_numbers)  # `?` is no third class
        return "binary" if zero_one and numbers <= 2 else "regression"
    if label.kind == "double":
        return "regression"
    shown = ", ".join(label.levels[:5])
    raise ScaffoldError(
        f"label {label.name!r} is {label.kind} (values: {shown}): the label must be a number; "
        f"derive one (for example 1 for one of these values, else 0) and name it with --label"
    )


def _find_event_time(sample: Sample, keys: Sequence[str]) -> str | None:
    for column in sample.columns:
        words = set(re.split(r"[^a-z]+", column.name.lower()))
        if (
            column.kind in ("timestamp", "date")
            and column.name not in keys
            and words & set(_EVENT_WORDS)
        ):
            return column.name
    return None


# ---------------------------------------------------------------- rendering


def _flow(value: object) -> str:
    """A YAML flow value: JSON is YAML, and quotes whatever needs it."""
    return json.dumps(value, ensure_ascii=False)


def render_usecase(name: str, entity: str, sample: Sample, proposal: Proposal) -> str:
    """conf/usecases/<name>.yaml, commented: what was inferred from what, and what to review."""
    declared = [c for c in sample.columns if c.name not in proposal.undeclared]
    lines = [
        f"# {name}: written by `prescore init` from {sample.path.name} ({sample.rows} sample rows).",
        "# Review the lines marked REVIEW, then: prescore check --usecase " + name,
        f"name: {name}",
        f"entity: {entity}",
        f"description: {_flow('Predicts ' + proposal.label + ' for every ' + ', '.join(proposal.keys))}",
        "",
        "source:",
        f"  format: {sample.format}",
        f"  path: {name}    # under <state_dir>/landing/: put each day's file in {name}/run_date=YYYY-MM-DD/",
    ]
    if sample.options:
        lines.append(f"  options: {_flow(sample.options)}")
    if proposal.undeclared:
        lines.append("  columns: ignore_undeclared   # not read: " + ", ".join(proposal.undeclared))
    if proposal.quarantined:
        lines.append(
            "  on_bad_value: quarantine   # REVIEW: a number column has a few other values"
        )
    lines.append("  schema:")
    lines += [
        f"    {c.name}: {'string' if c.name in proposal.as_text else c.kind}" for c in declared
    ]
    lines += ["", f"keys: {_flow(proposal.keys)}"]
    if proposal.event_time:
        lines.append(f"event_time: {proposal.event_time}   # dedupe keeps the latest row per key")
    else:
        lines.append("# event_time: none found; a key seen twice in one run date is refused")
    label = sample.column(proposal.label)
    lines += [
        f"label: {proposal.label}",
        f"task: {proposal.task}   # REVIEW: {label.distinct} distinct label values in the sample",
    ]
    if proposal.numeric:
        lines += ["", "numeric_features:"] + [f"  - {n}" for n in proposal.numeric]
    if proposal.categorical:
        lines += [
            "",
            "categorical_features:   # the levels seen in the sample, most frequent first, or "
            "auto (learned from each model's training split); any other value becomes missing",
        ]
        lines += [
            f"  {n}: {_flow(levels)}"
            if levels is not None
            else f"  {n}: auto   # over {LISTED_LEVELS} distinct values in the sample"
            for n, levels in proposal.categorical.items()
        ]
    if proposal.pii:
        lines += ["", "pii:   # hash (HMAC-SHA256) | drop | generalise; only raw_ keeps the values"]
        lines += [
            f"  {n}: {{method: {method}}}   # REVIEW: {why}"
            for n, (method, why) in proposal.pii.items()
        ]
    lines += ["", "cleaning:"]
    if proposal.left_out:
        lines.append("  drop_columns:   # declared, not used downstream")
        lines += [f"    - {n}   # {why}" for n, why in proposal.left_out.items()]
    lines += [
        f"  max_quarantined_fraction: {QUARANTINE_LIMIT}",
        "",
        f"expectations: {raw_table(entity)}",
        "",
        "split: {train: 0.7, validation: 0.15, test: 0.15, seed: 42}",
        "",
        "model:",
        "  params: {max_depth: 4, n_estimators: 100, learning_rate: 0.1, seed: 7}",
        f"  promotion: {{metric: {'auc' if proposal.task == 'binary' else 'rmse'}, margin: 0.0}}",
    ]
    lines += [f"# REVIEW: {note}" for note in proposal.notes]
    return "\n".join(lines) + "\n"


def render_suite(entity: str, sample: Sample, proposal: Proposal) -> str:
    """expectations/raw_<entity>.json: a starter Great Expectations suite from the sample."""
    declared = [c.name for c in sample.columns if c.name not in proposal.undeclared]
    expectations: list[dict[str, object]] = [
        _expectation(
            "expect_table_columns_to_match_set", "critical", column_set=declared, exact_match=False
        ),
        _expectation("expect_table_row_count_to_be_between", "critical", min_value=1),
        *(
            _expectation("expect_column_values_to_not_be_null", "critical", column=k)
            for k in proposal.keys
        ),
    ]
    if len(proposal.keys) == 1:
        unique = _expectation(
            "expect_column_values_to_be_unique", "warning", column=proposal.keys[0]
        )
    else:
        unique = _expectation(
            "expect_compound_columns_to_be_unique", "warning", column_list=proposal.keys
        )
    expectations.append(unique)
    for name in proposal.numeric:
        column = sample.column(name)
        if column.kind != "boolean" and column.minimum is not None:
            expectations.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    "warning",
                    column=name,
                    min_value=column.minimum,
                    max_value=column.maximum,
                    mostly=0.99,
                )
            )
    for name, levels in proposal.categorical.items():
        if levels is None:  # learned: any value may be a level
            continue
        expectations.append(
            _expectation(
                "expect_column_values_to_be_in_set",
                "warning",
                column=name,
                value_set=levels,
                mostly=0.95,
            )
        )
    if proposal.task == "binary" and sample.column(proposal.label).kind != "boolean":
        expectations.append(
            _expectation(
                "expect_column_values_to_be_in_set",
                "warning",
                column=proposal.label,
                value_set=[0, 1],
            )
        )
    suite = {
        "name": raw_table(entity),
        "notes": [
            f"Written by `prescore init` from {sample.rows} sample rows of {sample.path.name}.",
            "critical fails the validate stage; warning is recorded in the validation table only.",
            "Ranges and level sets are the sample's: widen them once the data's range is known.",
        ],
        "expectations": expectations,
    }
    return json.dumps(suite, indent=2) + "\n"


def _expectation(kind: str, severity: str, **kwargs: object) -> dict[str, object]:
    return {"type": kind, "kwargs": kwargs, "severity": severity}


# ---------------------------------------------------------------- writing


def scaffold(
    settings: Settings,
    name: str,
    source_file: Path,
    *,
    label: str | None = None,
    keys: Sequence[str] | None = None,
    force: bool = False,
) -> dict[str, object]:
    """Write conf/usecases/<name>.yaml and its starter suite from a sample of `source_file`;
    refuse to replace either file unless `force`. The use case is validated before anything is
    written, so a file `init` writes always loads."""
    usecase_path = settings.conf_dir / "usecases" / f"{name}.yaml"
    suite_path = settings.expectations_dir / f"{raw_table(name)}.json"
    existing = [str(p) for p in (usecase_path, suite_path) if p.exists()]
    if existing and not force:
        raise ScaffoldError(f"{', '.join(existing)} already exist: pass --force to replace them")
    sample = read_sample(source_file)
    proposal = propose(sample, label=label, keys=keys)
    repeated = repeated_keys(sample, proposal.keys)
    if repeated:
        fix = (
            f"dedupe keeps the latest by {proposal.event_time}"
            if proposal.event_time
            else "name more key columns with --keys, or declare an event_time"
        )
        proposal.notes.append(
            f"{repeated} of {sample.rows} sample rows repeat the keys {proposal.keys}: {fix}"
        )
    text = render_usecase(name, name, sample, proposal)
    try:
        UseCase.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a proposal config refuses: say so rather than write it
        raise ScaffoldError(f"{source_file}: the proposed use case is not valid: {exc}") from None
    write_text_atomically(suite_path, render_suite(name, sample, proposal))
    write_text_atomically(usecase_path, text)
    return {
        "usecase": str(usecase_path),
        "suite": str(suite_path),
        "sample_rows": sample.rows,
        "keys": proposal.keys,
        "label": proposal.label,
        "task": proposal.task,
        "numeric_features": proposal.numeric,
        "categorical_features": sorted(proposal.categorical),
        "pii": sorted(proposal.pii),
        "left_out": sorted(proposal.left_out),
        "review": proposal.notes,
    }
