"""The Spark SQL expressions a use case may declare (`derive:`), checked without Spark.

A derived column is one Spark SQL expression over one row's source columns. It is parsed with
sqlglot (dialect spark) at config load, and refused unless it is a single row-wise expression:
no subquery, table, window, lambda, star or parameter; columns by their plain names only; and
every function it calls on the allow-list below. An allow-list, not a deny-list: Spark keeps
adding built-ins, and a new one that reads files, the session or the JVM (reflect, java_method,
input_file_name, read_files, current_user...) must be refused until someone decides otherwise.
The clock is refused too (current_date, now, unix_timestamp): time comes from the run date.

This module imports nothing from prescore; sqlglot is imported only when an expression is checked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot.tokens import Token

# Row-wise, deterministic Spark SQL built-ins that read nothing but their arguments.
ALLOWED_FUNCTIONS = frozenset(
    {
        # conditionals and nulls
        *("coalesce", "nvl", "nvl2", "nullif", "ifnull", "if", "nanvl", "isnull", "isnotnull"),
        *("isnan", "greatest", "least", "equal_null", "zeroifnull", "nullifzero"),
        # casts (`cast(x as int)`, `int(x)`) and the types a cast names
        *("cast", "try_cast", "boolean", "tinyint", "smallint", "int", "bigint", "float"),
        *("double", "decimal", "string", "date", "timestamp", "varchar", "char"),
        # arithmetic
        *("abs", "ceil", "ceiling", "floor", "round", "bround", "sqrt", "cbrt", "exp", "expm1"),
        *("ln", "log", "log10", "log2", "log1p", "pow", "power", "mod", "pmod", "sign", "signum"),
        *("negative", "positive", "try_add", "try_subtract", "try_multiply", "try_divide"),
        *("width_bucket",),
        # text
        *("lower", "upper", "lcase", "ucase", "trim", "ltrim", "rtrim", "btrim", "length"),
        *("char_length", "character_length", "substring", "substr", "left", "right", "concat"),
        *("concat_ws", "replace", "regexp_replace", "regexp_extract", "regexp_like", "lpad"),
        *("rpad", "split_part", "instr", "locate", "position", "startswith", "endswith"),
        *("contains", "initcap", "translate", "reverse", "repeat", "md5", "sha2"),
        # dates and times (of a column, never of the clock)
        *("year", "month", "day", "dayofmonth", "dayofweek", "dayofyear", "weekday"),
        *("weekofyear", "quarter", "hour", "minute", "second", "to_date", "to_timestamp"),
        *("try_to_timestamp", "date_add", "date_sub", "datediff", "months_between"),
        *("add_months", "date_trunc", "trunc", "date_format", "last_day", "make_date"),
        *("extract", "date_part", "unix_date", "unix_seconds"),
    }
)
# Words Spark reads as functions without parentheses, each of the session or the clock.
_NILADIC = frozenset(
    {
        *("current_date", "current_timestamp", "current_user", "user", "session_user"),
        *("current_catalog", "current_database", "current_schema", "current_timezone"),
        *("localtimestamp", "now"),
    }
)
# Keywords that may stand before "(" without calling a function: `a in (1, 2)`, `not (a)`.
_SYNTAX = frozenset(
    {"and", "or", "not", "in", "is", "when", "then", "else", "case", "between", "like"}
    | {"ilike", "rlike", "regexp", "as", "from", "distinct"}
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExpressionError(ValueError):
    """A derived column's expression is not one row-wise Spark SQL expression we allow."""


def referenced_columns(sql: str) -> set[str]:
    """The column names a Spark SQL expression reads; ExpressionError says why it is refused."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        tokens = sqlglot.tokenize(sql, read="spark")
        statements = sqlglot.parse(sql, read="spark")
    except (ParseError, TokenError) as error:
        raise ExpressionError(f"does not parse as Spark SQL: {_first_line(error)}") from None
    if not sql.strip():
        raise ExpressionError("is empty")
    if len(statements) != 1 or statements[0] is None:
        raise ExpressionError("must be exactly one expression (no ';')")
    _check_calls(tokens)
    tree = statements[0]
    refused = (
        *(exp.Query, exp.Subquery, exp.Table, exp.Window, exp.Lambda, exp.Star),
        *(exp.Placeholder, exp.Parameter, exp.Alias, exp.AggFunc),
    )
    for node in tree.walk():
        if isinstance(node, refused):
            what = type(node).__name__.lower()
            raise ExpressionError(f"{what} not allowed: one row-wise expression only")
    columns = set()
    for column in tree.find_all(exp.Column):
        if column.table:
            raise ExpressionError(f"{column.sql()}: name a column without a table or struct")
        columns.add(column.name)
    return columns


def _check_calls(tokens: list[Token]) -> None:
    """Every word before "(" is an allowed function (or syntax), and no bare session/clock word."""
    from sqlglot.tokens import TokenType

    literals = (TokenType.STRING, TokenType.NUMBER)
    for token, following in zip(tokens, [*tokens[1:], None], strict=True):
        word = token.text.lower()
        if token.token_type in literals or not _WORD.fullmatch(token.text):
            continue
        if token.token_type != TokenType.IDENTIFIER and word in _NILADIC:
            raise ExpressionError(
                f"{token.text} reads the session or the clock: not allowed (a column of that "
                "name: quote it in backticks)"
            )
        calls = following is not None and following.token_type == TokenType.L_PAREN
        if calls and word not in _SYNTAX and word not in ALLOWED_FUNCTIONS:
            raise ExpressionError(
                f"function {token.text}() is not on the allow-list of row-wise built-ins "
                "(prescore.expressions.ALLOWED_FUNCTIONS)"
            )


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
