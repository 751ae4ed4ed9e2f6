"""A connection the database server dropped fails one read, not every read after it: broadcast
reads and a channel's claims (which run on the driver's cursor for speed) still let the pool
find out and reconnect."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from broadcaster.store import broadcasts, dispatch
from broadcaster.store.database import Database


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(conn: Connection, pid: int) -> None:
    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def test_a_dropped_connection_fails_one_read(database_url: str, merchant: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the server drops connections on PostgreSQL; SQLite has no server")
    db = Database.from_url(database_url, threads=2)  # its own pool: other tests keep theirs
    try:
        assert await db.read_point(broadcasts.get, merchant, "none") is None
        pid = await db.read_point(_backend_pid)
        await db.write(_terminate, pid)
        with contextlib.suppress(DBAPIError):  # the call that met it may fail
            await db.read_point(broadcasts.get, merchant, "none")
        for _ in range(3):
            assert await db.read_point(broadcasts.get, merchant, "none") is None
    finally:
        db.close()


def test_a_claim_on_a_dropped_connection_fails_as_sqlalchemy_would(database_url: str) -> None:
    """A claim's statements meet a dropped connection as SQLAlchemy's own would: with a
    DBAPIError that invalidates the connection, which the caller's transaction runs again on a
    fresh one (store.database), rather than with the driver's error."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the server drops connections on PostgreSQL; SQLite has no server")
    db = Database.from_url(database_url, threads=1)
    now = datetime.now(UTC)
    claim = {
        "channel": "none",
        "owner": "replica",
        "lease_until": now + timedelta(seconds=30),
        "now": now,
        "limit": 8,
    }
    try:
        with db.engine.connect() as conn:
            pid = _backend_pid(conn)
            conn.commit()
            with db.engine.connect() as other:
                _terminate(other, pid)
                other.commit()
            with pytest.raises(DBAPIError) as raised:
                dispatch.claim(conn, **claim)  # type: ignore[arg-type]
            assert raised.value.connection_invalidated
        with db.writing() as conn:
            assert dispatch.claim(conn, **claim) == []  # type: ignore[arg-type]
    finally:
        db.close()
