"""The Message Center outbox: events written with a batch's outcome, read after a cursor.

Readers advance a cursor over `seq`, so events must become visible in `seq` order. SQLite has
one writer at a time. On PostgreSQL, transactions writing a merchant's events first take a
transaction-scoped advisory lock for that merchant, so they commit in the order they numbered
their events, and a reader never sees seq 11 while seq 10 is still uncommitted.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Connection, Row, select, text

from broadcaster.domain.deliveries import DeliveryOutcome, Event, EventKind
from broadcaster.store.clock import from_us
from broadcaster.store.tables import events as t

_LOCK_SPACE = 0x62726F61  # "broa": advisory locks of this service


def _serialize_writers(conn: Connection, merchant: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": _LOCK_SPACE, "key": zlib.crc32(merchant.encode()) - 2**31},
        )


def record_delivered(
    conn: Connection,
    *,
    merchant: str,
    channel: str,
    broadcast: str,
    first_seq: int,
    last_seq: int,
    now: int,
) -> int:
    """Events for the recipients in [first_seq, last_seq] whose delivery was SENT: a
    conversation-created event first for those without a conversation (who now have one),
    then the broadcast-message event. Returns how many events were written."""
    _serialize_writers(conn, merchant)
    params = {
        "m": merchant,
        "ch": channel,
        "b": broadcast,
        "lo": first_seq,
        "hi": last_seq,
        "now": now,
        "sent": int(DeliveryOutcome.SENT),
    }
    sent = "d.broadcast_id = :b AND d.seq BETWEEN :lo AND :hi AND d.outcome = :sent"
    new = (
        f"FROM deliveries d JOIN contacts c ON c.id = d.contact_id WHERE {sent}"
        " AND NOT c.has_conversation AND NOT EXISTS"
        " (SELECT 1 FROM conversations v WHERE v.contact_id = d.contact_id)"
    )
    created = conn.execute(
        text(
            "INSERT INTO events (merchant_id, channel_id, contact_id, broadcast_id, kind,"
            f" create_time) SELECT :m, :ch, d.contact_id, d.broadcast_id,"
            f" {int(EventKind.CONVERSATION_CREATED)}, :now {new} ORDER BY d.seq"
        ),
        params,
    ).rowcount
    if created:
        conn.execute(text(f"INSERT INTO conversations (contact_id) SELECT d.contact_id {new}"),
                     params)  # fmt: skip
    shown = conn.execute(
        text(
            "INSERT INTO events (merchant_id, channel_id, contact_id, broadcast_id, kind,"
            f" create_time) SELECT :m, :ch, d.contact_id, d.broadcast_id,"
            f" {int(EventKind.BROADCAST_MESSAGE)}, :now FROM deliveries d WHERE {sent}"
            " ORDER BY d.seq"
        ),
        params,
    ).rowcount
    return int(created + shown)


def _event(row: Row[tuple[object, ...]]) -> Event:
    m = row._mapping
    return Event(
        seq=m["seq"],
        merchant=m["merchant_id"],
        channel=m["channel_id"],
        contact=m["contact_id"],
        broadcast=m["broadcast_id"],
        kind=EventKind(m["kind"]),
        create_time=from_us(m["create_time"]),
    )


def after(conn: Connection, merchant: str, seq: int, limit: int) -> list[Event]:
    rows = conn.execute(
        select(t).where(t.c.merchant_id == merchant, t.c.seq > seq).order_by(t.c.seq).limit(limit)
    )
    return [_event(r) for r in rows]
