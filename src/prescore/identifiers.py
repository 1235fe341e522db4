"""Names that reach paths and SQL: the patterns config enforces, and quoting for where SQL is built.

Config refuses a use-case name or a column name outside these patterns, so a name is already
safe when it reaches SQL. The quoting is the second line of defence: every statement built from
a name quotes it here, so a name that slipped past config (a column read from a file's schema,
a view named after a file) is a plain identifier to the engine, never SQL.

This module imports nothing from prescore: config, serving, bi and the CLI all use it.
"""

from __future__ import annotations

import re

# A use case names a file, a folder, tables, DAG ids and a registered model: short and plain.
USECASE_NAME = r"[a-z][a-z0-9_]{0,39}"
# A column name as every engine on the path (Spark, Delta, Parquet, DuckDB, pandas) reads it alike.
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"

_USECASE_NAME = re.compile(USECASE_NAME)
_IDENTIFIER = re.compile(IDENTIFIER)


def _matching(value: str, pattern: re.Pattern[str], what: str) -> str:
    if pattern.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not {what}")
    return value


def check_usecase_name(value: str) -> str:
    """`value` if it is a use-case name, else a ValueError saying what one looks like."""
    what = "a use-case name: 1 to 40 lowercase letters, digits or _, starting with a letter"
    return _matching(value, _USECASE_NAME, what)


def check_identifier(value: str) -> str:
    """`value` if it is a safe column name, else a ValueError saying what one looks like."""
    what = "a safe column name: letters, digits or _, starting with a letter or _"
    return _matching(value, _IDENTIFIER, what)


def _without_nul(name: str) -> str:
    if "\x00" in name:  # engines may end the name at a NUL: refuse rather than guess
        raise ValueError(f"{name!r}: a name cannot hold a NUL character")
    return name


def quote_identifier(name: str) -> str:
    """`name` as a DuckDB (standard SQL) identifier: in double quotes, each `"` doubled."""
    return '"' + _without_nul(name).replace('"', '""') + '"'


def quote_spark_identifier(name: str) -> str:
    """`name` as a Spark SQL identifier (DDL strings, expressions): in backticks, each doubled."""
    return "`" + _without_nul(name).replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    """`value` as an SQL string literal: in single quotes, each `'` doubled."""
    return "'" + _without_nul(value).replace("'", "''") + "'"
