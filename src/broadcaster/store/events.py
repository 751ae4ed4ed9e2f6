"""The Message Center outbox: a row per accepted batch (or run of adjacent batches recorded
together), written with their outcome, read as one event per delivered recipient after a cursor.

An outbox row names a broadcast's seq range; its delivered recipients are the deliveries in that
range still PENDING (stored 0: sent with their batch; those refused one by one carry their own
outcome). Each is read as a broadcast-message event, preceded by a conversation-created event
where `conversations` names that very delivery as the one that created the contact's
conversation. Writing a batch is then (a share of) one outbox row plus the conversations it
created, instead of one or two event rows per recipient.

Readers advance a cursor over (row, recipient, kind), so rows must become visible in `seq` order.
SQLite has one writer at a time. On PostgreSQL, transactions writing a merchant's rows first take
a transaction-scoped advisory lock for that merchant, so they commit in the order they numbered
their rows, and a reader never sees row 11 while row 10 is still uncommitted.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, text

from broadcaster.domain.deliveries import Event, EventKind, EventPosition
from broadcaster.store.clock import from_us

_LOCK_SPACE = 0x62726F61  # "broa": advisory locks of this service
_ROWS_AT_ONCE = 64  # outbox rows read per step of `after`


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
    spans: Sequence[tuple[int, int]],
    now: int,
) -> None:
    """The batches covering the seq ranges `spans` were accepted: their PENDING recipients
    were delivered. Those without a conversation (on the contact or from an earlier broadcast)
    now have one, created by this delivery; then an outbox row per range."""
    _serialize_writers(conn, merchant)
    for lo, hi in spans:
        params = {"m": merchant, "ch": channel, "b": broadcast, "lo": lo, "hi": hi, "now": now}
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
    """Up to `limit` events after `position`, in stream order: the merchant's outbox rows from
    the position's on, each expanded with one index range read of its deliveries."""
    found: list[Event] = []
    row = position.row
    while len(found) < limit:
        ranges = conn.execute(
            text(
                "SELECT seq, channel_id, broadcast_id, first_seq, last_seq, create_time"
                " FROM outbox WHERE merchant_id = :m AND seq >= :row ORDER BY seq LIMIT :n"
            ),
            {"m": merchant, "row": row, "n": _ROWS_AT_ONCE},
        ).all()
        for r in ranges:
            found += _expand(conn, merchant, r, position, limit - len(found))
            if len(found) >= limit:
                break
        if len(ranges) < _ROWS_AT_ONCE:
            break
        row = int(ranges[-1].seq) + 1
    return found[:limit]


def _expand(
    conn: Connection, merchant: str, r: Row[Any], position: EventPosition, limit: int
) -> list[Event]:
    """The events of outbox row `r` after `position`: at least `limit` if it has them."""
    start = position.seq if r.seq == position.row else r.first_seq
    recipients = conn.execute(
        text(
            "SELECT d.seq, d.contact_id, v.contact_id IS NOT NULL AS opened"
            " FROM deliveries d LEFT JOIN conversations v ON v.contact_id = d.contact_id"
            " AND v.broadcast_id = d.broadcast_id AND v.seq = d.seq"
            " WHERE d.broadcast_id = :b AND d.seq BETWEEN :lo AND :hi AND d.outcome = 0"
            " ORDER BY d.seq LIMIT :n"
        ),
        {"b": r.broadcast_id, "lo": start, "hi": r.last_seq, "n": limit + 1},
    )
    when = from_us(r.create_time)
    out = []
    for d in recipients:
        kinds = ((0, EventKind.CONVERSATION_CREATED),) if d.opened else ()
        for order, kind in (*kinds, (1, EventKind.BROADCAST_MESSAGE)):
            at = EventPosition(int(r.seq), int(d.seq), order)
            if at > position:
                out.append(Event(at, merchant, r.channel_id, d.contact_id, r.broadcast_id, kind,
                                 when))  # fmt: skip
    return out
