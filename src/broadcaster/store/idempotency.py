"""Request ids: a repeated Create, Copy or Send returns what the first call produced. Each id is
kept per merchant and method with a fingerprint of the request it was first used for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from broadcaster.store.clock import to_us
from broadcaster.store.tables import idempotent_requests as t


@dataclass(frozen=True, slots=True)
class Earlier:
    resource_name: str  # what the first call produced
    request_hash: str | None  # its request's fingerprint; None for rows from before 0009


def recall(conn: Connection, merchant: str, method: str, request_id: str) -> Earlier | None:
    """The first call with this request id, if any."""
    row = conn.execute(
        select(t.c.resource_name, t.c.request_hash).where(
            t.c.merchant_id == merchant, t.c.method == method, t.c.request_id == request_id
        )
    ).first()
    return None if row is None else Earlier(str(row[0]), row[1])


def remember(
    conn: Connection,
    merchant: str,
    method: str,
    request_id: str,
    resource_name: str,
    request_hash: str,
    now: datetime,
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
            request_hash=request_hash,
            create_time=now_us,
        )
    )
