"""Database error messages keep their diagnosis and lose the data they quote."""

from __future__ import annotations

import sqlite3

import psycopg
from hypothesis import given
from hypothesis import strategies as st
from psycopg import errors as pg_errors
from sqlalchemy import exc

from broadcaster.store.database import scrub_message, unreachable

_VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1)


@given(_VALUE)
def test_detail_context_and_quoted_input_are_cut(value: str) -> None:
    messages = [
        f'null value in column "a" of relation "t" violates not-null constraint\n'
        f"DETAIL:  Failing row contains (1, {value}).",
        f'duplicate key value violates unique constraint "pk"\nDETAIL:  Key (id)=({value}) exists.',
        f"invalid input syntax for type json\nDETAIL:  Token is invalid.\nCONTEXT:  JSON data, "
        f"line 1: {value}",
        f'invalid input syntax for type integer: "{value}"',
    ]
    for message in messages:
        scrubbed = scrub_message(message)
        assert "\n" not in scrubbed and "DETAIL" not in scrubbed
        assert scrubbed.split(":")[0] == message.split("\n")[0].split(":")[0]
        if len(value) > 3:
            assert f"{value})" not in scrubbed and f'"{value}"' not in scrubbed


def test_messages_without_data_are_kept() -> None:
    for message in ("NOT NULL constraint failed: webhook_events.receive_time", "deadlock detected"):
        assert scrub_message(message) == message


def _wrapped(orig: Exception, cls: type[exc.DBAPIError] = exc.OperationalError) -> exc.DBAPIError:
    return cls("SELECT 1", {}, orig)


def test_a_database_out_of_reach_is_told_from_a_failed_statement() -> None:
    away = [
        psycopg.OperationalError("connection failed: Connection refused"),  # no SQLSTATE
        pg_errors.AdminShutdown("terminating connection due to administrator command"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.ConnectionFailure("connection failure"),
    ]
    for orig in away:
        assert unreachable(_wrapped(orig)), orig
    assert unreachable(exc.TimeoutError("QueuePool limit reached"))
    lost = _wrapped(psycopg.InterfaceError("the connection is closed"), exc.InterfaceError)
    lost.connection_invalidated = True
    assert unreachable(lost)
    failed = [
        _wrapped(pg_errors.DeadlockDetected("deadlock detected")),
        _wrapped(pg_errors.UniqueViolation("duplicate key"), exc.IntegrityError),
        _wrapped(sqlite3.OperationalError("database is locked")),
    ]
    for error in failed:
        assert not unreachable(error), error
    assert not unreachable(ValueError("not a database error"))
