"""Test sends of broadcasts: record one, read one, list a broadcast's newest first."""

from __future__ import annotations

import json

from sqlalchemy import Connection, Row, delete, insert, select

from broadcaster.domain.paging import Page
from broadcaster.domain.test_sends import TestOutcome, TestRecipient, TestSend
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.tables import test_sends as t


def _encode(recipients: tuple[TestRecipient, ...]) -> str:
    return json.dumps([[r.contact, int(r.outcome), r.reason] for r in recipients])


def _test_send(row: Row[tuple[object, ...]]) -> TestSend:
    m = row._mapping
    return TestSend(
        merchant=m["merchant_id"],
        broadcast=m["broadcast_id"],
        id=m["id"],
        channel=m["channel_id"],
        recipients=tuple(
            TestRecipient(contact, TestOutcome(outcome), reason)
            for contact, outcome, reason in json.loads(m["recipients"])
        ),
        requested_by=m["requested_by"],
        create_time=from_us(m["create_time"]),
    )


def record(conn: Connection, made: TestSend) -> TestSend:
    conn.execute(
        insert(t).values(
            id=made.id,
            merchant_id=made.merchant,
            broadcast_id=made.broadcast,
            channel_id=made.channel,
            recipients=_encode(made.recipients),
            requested_by=made.requested_by,
            create_time=to_us(made.create_time),
        )
    )
    return made


def get(conn: Connection, merchant: str, broadcast: str, test_send: str) -> TestSend | None:
    row = conn.execute(
        select(t).where(
            t.c.merchant_id == merchant, t.c.broadcast_id == broadcast, t.c.id == test_send
        )
    ).first()
    return None if row is None else _test_send(row)


def list_page(conn: Connection, merchant: str, broadcast: str, page: Page) -> list[TestSend]:
    """Newest first; `page.size + 1` rows so the caller knows if another page follows."""
    query = select(t).where(t.c.merchant_id == merchant, t.c.broadcast_id == broadcast)
    if page.after is not None:
        query = query.where(t.c.id < page.after)
    rows = conn.execute(query.order_by(t.c.id.desc()).limit(page.size + 1))
    return [_test_send(r) for r in rows]


def delete_for(conn: Connection, broadcast: str) -> None:
    """Forget a broadcast's test sends (its draft is deleted)."""
    conn.execute(delete(t).where(t.c.broadcast_id == broadcast))
