"""Feeding many values to one SQL statement.

A bulk call passes its values as one JSON array parameter and the statement reads them as a table:
`json_each` on SQLite, `jsonb_array_elements` on PostgreSQL. One statement, one round trip,
whatever the number of rows.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, TextClause, text
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")


@functools.lru_cache(maxsize=128)
def statement(sql: str) -> TextClause:
    """`text(sql)`, parsed once: a bulk statement's SQL takes a handful of shapes (per dialect,
    per criteria), and hot paths run them over and over."""
    return text(sql)


def json_param(values: list[Any]) -> str:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def json_table(on: Connection | str, param: str, *, driver: bool = False) -> str:
    """SQL for a table with one column `value` holding the elements of the JSON array `:param`
    (`%(param)s` with `driver`: a statement for `rows` or `write`), on a connection or for a
    dialect named."""
    placeholder = f"%({param})s" if driver else f":{param}"
    if _dialect(on) == "postgresql":
        return f"jsonb_array_elements(CAST({placeholder} AS jsonb)) AS j(value)"
    return f"json_each({placeholder}) AS j"


def json_text(on: Connection | str, index: int) -> str:
    """SQL for element `index` (as text) of the JSON array in column `j.value`."""
    if _dialect(on) == "postgresql":
        return f"(j.value->>{index})"
    return f"json_extract(j.value, '$[{index}]')"


def _dialect(on: Connection | str) -> str:
    return on if isinstance(on, str) else on.dialect.name


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
    return _on_cursor(
        conn,
        statement,
        args,
        lambda cursor: list(cursor.fetchall()),
        lambda result: list(result.tuples()),
    )


def write(conn: Connection, statement: str, args: Mapping[str, Any]) -> int:
    """`rows` for a write that returns no rows (`%(name)s` placeholders): how many rows it
    changed. For a statement run many times a second (a channel's claim), where SQLAlchemy's
    handling of the call cost more than the statement."""
    return _on_cursor(
        conn, statement, args, lambda cursor: int(cursor.rowcount), lambda result: result.rowcount
    )


def _on_cursor(
    conn: Connection,
    statement: str,
    args: Sequence[Any] | Mapping[str, Any],
    done: Callable[[Any], T],
    done_again: Callable[[CursorResult[Any]], T],
) -> T:
    """Run `statement` on the driver's cursor and return `done(cursor)`. It counts as a
    statement SQLAlchemy ran for whoever listens (metrics.watch_database). If the driver
    raises, the statement is run again through SQLAlchemy (`done_again` of its result), for its
    handling of errors: a connection the server dropped invalidates the pool, and the driver's
    error is scrubbed and raised as SQLAlchemy's. A statement that failed changed nothing.
    Unless the failure aborted PostgreSQL's transaction: there, run again, the statement would
    only meet "current transaction is aborted", and the error is raised as SQLAlchemy's
    without it (its SQLSTATE kept: store.database runs a deadlocked transaction again)."""
    sql = _placeholders(statement) if conn.dialect.name == "sqlite" else statement
    cursor = conn.connection.cursor()
    try:
        conn.dispatch.before_cursor_execute(conn, cursor, sql, args, None, False)
        try:
            cursor.execute(sql, args)
        except Exception as e:
            params = dict(args) if isinstance(args, Mapping) else tuple(args)
            if _aborted(conn):
                error = DBAPIError.instance(
                    sql, params, e, conn.dialect.loaded_dbapi.Error, hide_parameters=True
                )
                raise error from e
            return done_again(conn.exec_driver_sql(sql, params))
        conn.dispatch.after_cursor_execute(conn, cursor, sql, args, None, False)
        return done(cursor)
    finally:
        cursor.close()


def _aborted(conn: Connection) -> bool:
    """Whether the connection's transaction is in error (PostgreSQL's after a failed statement:
    it runs nothing more until rolled back). A connection that was lost is not: its state is
    unknown, and running the statement again lets SQLAlchemy find that out."""
    info = getattr(conn.connection.dbapi_connection, "info", None)
    status = getattr(info, "transaction_status", None)
    return conn.dialect.name == "postgresql" and status is not None and int(status) == _INERROR


_INERROR = 3  # psycopg.pq.TransactionStatus.INERROR (libpq's PQTRANS_INERROR)


def named(statement: str) -> str:
    """`%(name)s` placeholders as `:name` (SQLAlchemy's, and SQLite's)."""
    return re.sub(r"%\((\w+)\)s", r":\1", statement)


@functools.lru_cache(maxsize=128)
def _placeholders(statement: str) -> str:
    """`%s` and `%(name)s` placeholders as SQLite's `?` and `:name`."""
    return named(statement).replace("%s", "?")
