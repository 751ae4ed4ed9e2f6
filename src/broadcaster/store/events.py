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

Watchers learn of new rows without polling: on PostgreSQL the statement that takes that lock
also queues a NOTIFY on `broadcaster_events` carrying the merchant id, delivered to every
replica's listener (store.notifications) when the transaction commits; within one process
(SQLite) the engine signals after recording. `heads` then tells, in one statement for all the
merchants being watched, which have rows past what their watchers read.

Reads run on the driver's cursor with statements written once per dialect: a page of a
thousand events is a few index range reads, and SQLAlchemy's per-row handling would cost more
than the reads themselves.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import Event, EventKind, EventPosition
from broadcaster.store import bulk
from broadcaster.store.clock import from_us

_LOCK_SPACE = 0x62726F61  # "broa": advisory locks of this service
_ROWS_AT_ONCE = 64  # outbox rows read per step of `after`
NOTIFY_CHANNEL = "broadcaster_events"


def _serialize_writers(conn: Connection, merchant: str) -> None:
    if conn.dialect.name == "postgresql":
        # The NOTIFY rides on the lock's statement (no round trip of its own); PostgreSQL sends
        # it at commit, once per transaction and merchant however many rows it writes.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key), pg_notify(:channel, :m)"),
            {
                "space": _LOCK_SPACE,
                "key": zlib.crc32(merchant.encode()) - 2**31,
                "channel": NOTIFY_CHANNEL,
                "m": merchant,
            },
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


_ROWS_SQL = (
    "SELECT seq, channel_id, broadcast_id, first_seq, last_seq, create_time FROM outbox"
    " WHERE merchant_id = %s AND seq >= %s ORDER BY seq LIMIT %s"
)
_RECIPIENTS_SQL = (
    "SELECT d.seq, d.contact_id, v.contact_id IS NOT NULL"
    " FROM deliveries d LEFT JOIN conversations v ON v.contact_id = d.contact_id"
    " AND v.broadcast_id = d.broadcast_id AND v.seq = d.seq"
    " WHERE d.broadcast_id = %s AND d.seq BETWEEN %s AND %s AND d.outcome = 0"
    " ORDER BY d.seq LIMIT %s"
)
# One backward index probe per merchant (a GROUP BY would read every row of each).
_HEAD_SQL = "SELECT CAST(%s AS VARCHAR), (SELECT max(seq) FROM outbox WHERE merchant_id = %s)"


def after(conn: Connection, merchant: str, position: EventPosition, limit: int) -> list[Event]:
    """Up to `limit` events after `position`, in stream order: the merchant's outbox rows from
    the position's on, each expanded with one index range read of its deliveries."""
    found: list[Event] = []
    row = position.row
    while len(found) < limit:
        ranges = bulk.rows(conn, _ROWS_SQL, (merchant, row, _ROWS_AT_ONCE))
        for r in ranges:
            _expand(conn, merchant, r, position, limit - len(found), found)
            if len(found) >= limit:
                break
        if len(ranges) < _ROWS_AT_ONCE:
            break
        row = int(ranges[-1][0]) + 1
    del found[limit:]
    return found


def _expand(
    conn: Connection, merchant: str, r: Any, position: EventPosition, limit: int, out: list[Event]
) -> None:
    """Append the events of outbox row `r` after `position` to `out`: at least `limit` if it
    has them."""
    row, channel, broadcast, first, last_seq, create_time = r
    row = int(row)
    resumes = row == position.row
    if resumes:
        first = position.seq
    recipients = bulk.rows(conn, _RECIPIENTS_SQL, (broadcast, first, last_seq, limit + 1))
    when = from_us(create_time)
    created, message = EventKind.CONVERSATION_CREATED, EventKind.BROADCAST_MESSAGE
    start = len(out)
    append = out.append
    for seq, contact, opened in recipients:
        if opened:
            append(Event(EventPosition(row, seq, 0), merchant, channel, contact, broadcast,
                         created, when))  # fmt: skip
        append(Event(EventPosition(row, seq, 1), merchant, channel, contact, broadcast,
                     message, when))  # fmt: skip
    if resumes:  # the position's own recipient: only what comes after it
        while len(out) > start and out[start].position <= position:
            del out[start]


def heads(conn: Connection, merchants: Sequence[str]) -> dict[str, int]:
    """Each merchant's last outbox row (0: none yet), in one statement."""
    if not merchants:
        return {}
    statement = " UNION ALL ".join([_HEAD_SQL] * len(merchants))
    found = bulk.rows(conn, statement, [m for m in merchants for _ in (0, 1)])
    return {m: int(head or 0) for m, head in found}
