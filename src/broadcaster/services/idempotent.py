"""Create-once: a Create (or Send) with a request id the caller already used returns what the
first call made and does nothing again.

The result's name is recorded in the same transaction that creates it; of two concurrent calls
with one request id, the second fails on the record's primary key and, retried, finds the
first's result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from broadcaster.domain.errors import DomainError
from broadcaster.store import idempotency
from broadcaster.store.database import Database

T = TypeVar("T")


async def create_once(
    db: Database,
    merchant: str,
    method: str,
    request_id: str,
    *,
    create: Callable[[Connection], tuple[T, str]],
    find: Callable[[Connection, str], T | None],
    gone: Callable[[str], DomainError],
    now: Callable[[], datetime],
) -> T:
    """`create(conn)` makes the resource and returns it with its name; `find(conn, name)` loads
    an earlier result; `gone(name)` is raised when that result has been deleted since."""

    def tx(conn: Connection) -> T:
        if request_id:
            earlier = idempotency.recall(conn, merchant, method, request_id)
            if earlier is not None:
                found = find(conn, earlier)
                if found is None:
                    raise gone(earlier)
                return found
        made, name = create(conn)
        if request_id:
            idempotency.remember(conn, merchant, method, request_id, name, now())
        return made

    try:
        return await db.write(tx)
    except IntegrityError:
        # A concurrent call with the same request id (or the same unique resource) won.
        return await db.write(tx)
