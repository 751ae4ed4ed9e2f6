"""Feeding many values to one SQL statement.

A bulk call passes its values as one JSON array parameter and the statement reads them as a table:
`json_each` on SQLite, `jsonb_array_elements` on PostgreSQL. One statement, one round trip,
whatever the number of rows.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, TextClause, text


@functools.lru_cache(maxsize=128)
def statement(sql: str) -> TextClause:
    """`text(sql)`, parsed once: a bulk statement's SQL takes a handful of shapes (per dialect,
    per criteria), and hot paths run them over and over."""
    return text(sql)


def json_param(values: list[Any]) -> str:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def json_table(conn: Connection, param: str) -> str:
    """SQL for a table with one column `value` holding the elements of the JSON array `:param`."""
    if conn.dialect.name == "postgresql":
        return f"jsonb_array_elements(CAST(:{param} AS jsonb)) AS j(value)"
    return f"json_each(:{param}) AS j"


def json_text(conn: Connection, index: int) -> str:
    """SQL for element `index` (as text) of the JSON array in column `j.value`."""
    if conn.dialect.name == "postgresql":
        return f"(j.value->>{index})"
    return f"json_extract(j.value, '$[{index}]')"


def json_scalar_text(conn: Connection) -> str:
    """SQL for the element itself when the JSON array holds plain strings."""
    if conn.dialect.name == "postgresql":
        return "(j.value #>> '{}')"
    return "j.value"


def insert_ignore(conn: Connection) -> tuple[str, str]:
    """(prefix, suffix) that make an INSERT skip rows whose key already exists."""
    if conn.dialect.name == "postgresql":
        return "INSERT INTO", "ON CONFLICT DO NOTHING"
    return "INSERT OR IGNORE INTO", ""


def in_strings(conn: Connection, column: str, param: str) -> str:
    """SQL: `column` is one of the strings bound to `:param` (made by `strings_param`).

    PostgreSQL gets a text[] and `= ANY`, which its planner turns into index probes; SQLite
    reads the JSON array with json_each."""
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(CAST(:{param} AS text[]))"
    return f"{column} IN (SELECT value FROM json_each(:{param}))"


def strings_param(conn: Connection, values: list[str]) -> list[str] | str:
    return values if conn.dialect.name == "postgresql" else json_param(values)


def rows(conn: Connection, statement: str, args: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    """The rows of a read with `%s` placeholders (or `%(name)s` ones, with `args` a mapping), as
    tuples straight from the connection's DBAPI cursor: for reads of hundreds of rows on hot
    paths, where building SQLAlchemy rows would cost more than the query."""
    sql = _placeholders(statement) if conn.dialect.name == "sqlite" else statement
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    except Exception:
        # Again through SQLAlchemy, for its handling of errors (a connection the server
        # dropped invalidates the pool) and its exception types.
        params = dict(args) if isinstance(args, Mapping) else tuple(args)
        return list(conn.exec_driver_sql(sql, params).tuples())
    finally:
        cursor.close()


def named(statement: str) -> str:
    """`%(name)s` placeholders as `:name` (SQLAlchemy's, and SQLite's)."""
    return re.sub(r"%\((\w+)\)s", r":\1", statement)


@functools.lru_cache(maxsize=128)
def _placeholders(statement: str) -> str:
    """`%s` and `%(name)s` placeholders as SQLite's `?` and `:name`."""
    return named(statement).replace("%s", "?")
