"""The Message Center outbox: one row per accepted batch, written with the batch's outcome, read
as one event per delivered recipient after a cursor.

An outbox row names a broadcast's seq range; its delivered recipients are the deliveries in that
range still PENDING (stored 0: sent with their batch; those refused one by one carry their own
outcome). Each is read as a broadcast-message event, preceded by a conversation-created event
where `conversations` names that very delivery as the one that created the contact's
conversation. Writing a batch is then one outbox row plus the conversations it created, instead
of one or two event rows per recipient.

Readers advance a cursor over (row, recipient, kind), so rows must become visible in `seq` order.
SQLite has one writer at a time. On PostgreSQL, transactions writing a merchant's rows first take
a transaction-scoped advisory lock for that merchant, so they commit in the order they numbered
their rows, and a reader never sees row 11 while row 10 is still uncommitted.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import Event, EventKind, EventPosition
from broadcaster.store.clock import from_us

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
) -> None:
    """The batch [first_seq, last_seq] was accepted: its PENDING recipients were delivered.
    Those without a conversation (on the contact or from an earlier broadcast) now have one,
    created by this delivery; then the batch's outbox row."""
    _serialize_writers(conn, merchant)
    params = {"m": merchant, "ch": channel, "b": broadcast, "lo": first_seq, "hi": last_seq,
              "now": now}  # fmt: skip
    conn.execute(
        text(
            "INSERT INTO conversations (contact_id, broadcast_id, seq)"
            " SELECT d.contact_id, d.broadcast_id, d.seq FROM deliveries d"
            " JOIN contacts c ON c.id = d.contact_id"
            " WHERE d.broadcast_id = :b AND d.seq BETWEEN :lo AND :hi AND d.outcome = 0"
            " AND NOT c.has_conversation ON CONFLICT (contact_id) DO NOTHING"
        ),
        params,
    )
    conn.execute(
        text(
            "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
            " create_time) VALUES (:m, :ch, :b, :lo, :hi, :now)"
        ),
        params,
    )


def after(conn: Connection, merchant: str, position: EventPosition, limit: int) -> list[Event]:
    """Up to `limit` events after `position`, in stream order."""
    rows = conn.execute(
        text(
            "SELECT o.seq AS row, d.seq, d.contact_id, o.channel_id, o.broadcast_id,"
            " o.create_time, v.contact_id IS NOT NULL AS opened"
            " FROM outbox o JOIN deliveries d ON d.broadcast_id = o.broadcast_id"
            " AND d.seq BETWEEN o.first_seq AND o.last_seq AND d.outcome = 0"
            " LEFT JOIN conversations v ON v.contact_id = d.contact_id"
            " AND v.broadcast_id = d.broadcast_id AND v.seq = d.seq"
            " WHERE o.merchant_id = :m AND o.seq >= :row AND (o.seq > :row OR d.seq >= :seq)"
            " ORDER BY o.seq, d.seq LIMIT :limit"
        ),
        {"m": merchant, "row": position.row, "seq": position.seq, "limit": limit + 1},
    )
    found: list[Event] = []
    for r in rows:
        kinds = ((0, EventKind.CONVERSATION_CREATED),) if r.opened else ()
        for order, kind in (*kinds, (1, EventKind.BROADCAST_MESSAGE)):
            at = EventPosition(int(r.row), int(r.seq), order)
            if at > position:
                found.append(Event(at, merchant, r.channel_id, r.contact_id, r.broadcast_id,
                                   kind, from_us(r.create_time)))  # fmt: skip
    return found[:limit]
