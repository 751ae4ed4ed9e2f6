"""Statements run on the driver's cursor (store.bulk, for hot paths) fail as SQLAlchemy's own
would: with SQLAlchemy's error for the statement's own failure, not for running it again in
a transaction the failure aborted."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from broadcaster.store import bulk
from broadcaster.store.database import Database


def test_a_failing_statement_raises_its_own_error(database_url: str) -> None:
    db = Database.from_url(database_url, threads=1)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("CREATE TEMPORARY TABLE once_only (id INTEGER PRIMARY KEY)"))
            insert = "INSERT INTO once_only (id) VALUES (%(n)s)"
            assert bulk.write(conn, insert, {"n": 1}) == 1
            with pytest.raises(IntegrityError) as raised:
                bulk.write(conn, insert, {"n": 1})
            if database_url.startswith("postgresql"):
                # The key's refusal (unique_violation), which a deadlock's 40P01 would be too;
                # not in_failed_sql_transaction, as a second run in the aborted transaction gets.
                assert getattr(raised.value.orig, "sqlstate", None) == "23505"
                assert "once_only" in str(raised.value)
            conn.rollback()
    finally:
        db.close()
