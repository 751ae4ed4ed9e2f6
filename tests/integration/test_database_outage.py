"""A database outage (PostgreSQL restarted, the network cut) fails the calls that meet it with
UNAVAILABLE `DATABASE_UNAVAILABLE`, retryable, never an unexpected error; and the pool recovers
on the next call once the database is back, stale connections and all.

The outage is a proxy between this test's pool and the shared PostgreSQL server, cut and
restored (tests/pgproxy.py): the server itself stays up for everyone else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from sqlalchemy import Connection

from broadcaster.domain.errors import Unavailable
from broadcaster.domain.reasons import Reason
from broadcaster.store import broadcasts
from broadcaster.store.database import Database
from tests.pgproxy import PgProxy, proxied


def _one(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT 1").scalar_one())


@pytest.fixture
def outage(database_url: str) -> Iterator[tuple[PgProxy, Database]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("a database outage is a server's: SQLite has none")
    with proxied(database_url) as (proxy, url):
        db = Database.from_url(url, threads=2)  # its own pool: other tests keep theirs
        try:
            yield proxy, db
        finally:
            db.close()


def _calls(db: Database, merchant: str) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each kind: a point read (on the event loop), a read and a write (threads)."""
    return {
        "read_point": lambda: db.read_point(broadcasts.get, merchant, "none"),
        "read": lambda: db.read(_one),
        "write": lambda: db.write(_one),
    }


async def _all_succeed(calls: dict[str, Callable[[], Awaitable[object]]]) -> None:
    assert await calls["read_point"]() is None
    assert await calls["read"]() == 1
    assert await calls["write"]() == 1


async def test_calls_fail_unavailable_while_it_is_down_then_succeed(
    outage: tuple[PgProxy, Database], merchant: str
) -> None:
    proxy, db = outage
    calls = _calls(db, merchant)
    await _all_succeed(calls)  # every pool holds a connection now
    proxy.cut()
    for _ in range(3):  # the pooled connections fail, then so do the new ones
        for kind, call in calls.items():
            with pytest.raises(Unavailable) as failed:
                await call()
            assert failed.value.reason == Reason.DATABASE_UNAVAILABLE, kind
    proxy.restore()
    await _all_succeed(calls)  # the first call after the outage succeeds
    await _all_succeed(calls)


async def test_the_first_calls_after_a_restart_nobody_saw_succeed(
    outage: tuple[PgProxy, Database], merchant: str
) -> None:
    """Down and back between two calls: the pooled connections are dead, and the calls that
    find them so are run again on fresh ones (nothing they did was committed)."""
    proxy, db = outage
    calls = _calls(db, merchant)
    await _all_succeed(calls)
    before = proxy.connections
    proxy.cut()
    proxy.restore()
    await _all_succeed(calls)
    assert proxy.connections > before  # on new connections
