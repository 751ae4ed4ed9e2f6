"""Request ids: a repeated Create or Send returns what the first call produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from broadcaster.store.clock import to_us
from broadcaster.store.tables import idempotent_requests as t


def recall(conn: Connection, merchant: str, method: str, request_id: str) -> str | None:
    """The resource name the first call with this request id produced, if any."""
    row = conn.execute(
        select(t.c.resource_name).where(
            t.c.merchant_id == merchant, t.c.method == method, t.c.request_id == request_id
        )
    ).first()
    return None if row is None else str(row[0])


def remember(
    conn: Connection, merchant: str, method: str, request_id: str, resource_name: str, now: datetime
) -> None:
    """Record the result in the same transaction that created it.

    Two concurrent calls with one request id cannot both commit: the primary key rejects the
    second, whose transaction then rolls back and is retried by the caller to find the first.
    """
    now_us = to_us(now)
    conn.execute(
        insert(t).values(
            merchant_id=merchant,
            method=method,
            request_id=request_id,
            resource_name=resource_name,
            create_time=now_us,
        )
    )
