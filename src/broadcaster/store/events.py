"""The Message Center outbox: a row per accepted batch (or run of adjacent batches recorded
together), written with their outcome, read as one event per delivered recipient after a cursor.

An outbox row names a broadcast's seq range; its delivered recipients are the recipients in that
range still "as their batch" (store.batch_recipients: sent with their batch; those refused one
by one carry their own outcome). Each is read as a broadcast-message event, preceded by a
conversation-created event where `conversations` names that very delivery as the one that
created the contact's conversation (on PostgreSQL, the row's `opened` lists them). Writing a
batch is then (a share of) one outbox row plus the conversations it created, instead of one or
two event rows per recipient.

Readers advance a cursor over (row, recipient, kind), so rows must become visible in `seq` order.
SQLite has one writer at a time. On PostgreSQL, transactions writing a merchant's rows first take
a transaction-scoped advisory lock for that merchant, so they commit in the order they numbered
their rows, and a reader never sees row 11 while row 10 is still uncommitted.

A broadcast's lifecycle steps share the stream: each transition (domain.lifecycle.EVENTS) writes
an outbox row of its event's kind, in the transaction that makes it, with the broadcast's
counters at that moment (`record_transitions`), under the same lock. A merchant's lifecycle
rows are found by a partial index, and a broadcast's rows by another, so a reader that wants
only those (`EventFilter`) reads no recipient row of other broadcasts or kinds.

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

import bisect
import functools
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text

from broadcaster.domain import lifecycle
from broadcaster.domain.broadcasts import Counters
from broadcaster.domain.deliveries import (
    EVERY_EVENT,
    LIFECYCLE_KINDS,
    Event,
    EventFilter,
    EventKind,
    EventPosition,
)
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.messages import Message
from broadcaster.store import batch_recipients, bulk
from broadcaster.store.bubbles import decode_messages
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
    talked: Sequence[int] | None = None,
    looked_up: bool = True,
) -> None:
    """The batches covering the seq ranges `spans` were accepted: their recipients still "as
    their batch" were delivered. Those without a conversation (on the contact or from an
    earlier broadcast) now have one, created by this delivery; then an outbox row per range.
    Whether a contact had one is judged by the snapshot, when the recipients were fixed: its
    batches name those who did (`talked`, their seqs), and the others' contacts are not read
    again. None: not noted (batches written by an earlier release): each contact is read.
    On PostgreSQL the row names the recipients whose conversation it created (`opened`), so
    that reading it needs no look-up per recipient. SQLite leaves it NULL: there, returning
    the inserted rows costs the one writer more (0.3-0.4 ms a batch of 500) than the
    in-process look-ups cost its readers.

    `looked_up` False (PostgreSQL, `talked` noted): conversations from earlier broadcasts are
    not looked up (`_conversations_sql`), and if a recipient has one, the insert fails with an
    IntegrityError; the caller records again, in a savepoint, with True
    (store.dispatch.record_sent)."""
    _serialize_writers(conn, merchant)
    looked = looked_up or talked is None
    statements = _delivered_sql(conn.dialect.name, _noted(talked), looked)
    ranges = [
        {"m": merchant, "ch": channel, "b": broadcast, "lo": lo, "hi": hi, "now": now}
        for lo, hi in spans
    ]
    if talked and _every_one_talked(talked, spans):
        # Every recipient had a conversation (a repeat send to an audience that talks): the
        # rows alone, in one statement, no seqs matched one by one.
        conn.execute(_delivered_sql(conn.dialect.name, "all", looked)[0], ranges)
        return
    # Seqs outside a span exclude nothing in it: one list serves every span.
    noted = bulk.json_param(list(talked)) if talked else None
    for params in ranges:
        if noted is not None:
            params["talked"] = noted
        for statement in statements:
            conn.execute(statement, params)


def _every_one_talked(talked: Sequence[int], spans: Sequence[tuple[int, int]]) -> bool:
    """Whether `talked` (distinct seqs) holds every seq of every span."""
    seqs = sorted(talked)
    return all(
        bisect.bisect_right(seqs, hi) - bisect.bisect_left(seqs, lo) == hi - lo + 1
        for lo, hi in spans
    )


@functools.cache
def _delivered_sql(dialect: str, noted: str, looked_up: bool) -> tuple[TextClause, ...]:
    """The statements that write a delivered range's conversations and outbox row
    (`_conversations_sql`, `noted`, `looked_up`). On PostgreSQL one writes both, the row
    listing the seqs the insert returns: reading them back into the process had cost it more
    than the rest of recording a batch (py-spy)."""
    outbox = (
        "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
        " create_time, opened)"
    )
    if noted == "all":  # every recipient had a conversation: the row alone
        opened = "'[]'" if dialect == "postgresql" else "NULL"
        return (
            text(
                bulk.named(
                    f"{outbox} VALUES (%(m)s, %(ch)s, %(b)s, %(lo)s, %(hi)s, %(now)s, {opened})"
                )
            ),
        )
    if dialect == "postgresql":
        return (
            text(
                bulk.named(
                    f"WITH opened AS ({_conversations_sql(dialect, True, noted, looked_up)})"
                    f" {outbox} SELECT %(m)s, %(ch)s, %(b)s, %(lo)s, %(hi)s, %(now)s,"
                    " '[' || COALESCE(string_agg(CAST(seq AS TEXT), ',' ORDER BY seq), '')"
                    " || ']' FROM opened"
                )
            ),
        )
    return (
        text(bulk.named(_conversations_sql(dialect, False, noted, looked_up))),
        text(f"{outbox} VALUES (:m, :ch, :b, :lo, :hi, :now, NULL)"),
    )


def _noted(talked: Sequence[int] | None) -> str:
    """Which `_conversations_sql`: contacts read, none talked, or some talked (by seq). (A
    range where every recipient talked is "all": no conversation is written, `_delivered_sql`.)"""
    return "read" if talked is None else "some" if talked else "none"


@functools.cache
def _conversations_sql(dialect: str, returning: bool, noted: str, looked_up: bool) -> str:
    """The conversations a delivered range (`%(b)s`, [`%(lo)s`, `%(hi)s`]) opened, inserted;
    with `returning`, their seqs come back. Who had a conversation already: `noted` "read", as
    their contacts say now; "none", no one; "some", those whose seqs `%(talked)s` lists (a JSON
    array); and, when `looked_up` (on SQLite always), those a conversation row names.

    On PostgreSQL the rows already there are left out by an anti-join rather than `ON CONFLICT
    DO NOTHING`, whose speculative insertion (a row inserted, then confirmed against the key)
    cost more per row (alone, 200,000 rows: 740-970 ms against 430-730). It is safe because
    every insert into `conversations` is made here, by a transaction holding the merchant's
    lock (`_serialize_writers`), and a contact is one merchant's: no other transaction can
    insert the same contact meanwhile, and each statement sees what the previous holder
    committed. A range names each contact once, so no statement inserts a contact twice.

    That look-up, an index probe per recipient, was a quarter of PostgreSQL's CPU in
    claiming and recording (bench.recording: 2.5-2.7 CPU-s per 1,000 batches without it,
    3.3-4.1 with). Without it (`looked_up` False) the table's key refuses a recipient who has a
    conversation row, and the caller records again with it."""
    source = f"({batch_recipients.as_batch(dialect)}) d"
    if noted == "read":
        source += " JOIN contacts c ON c.id = d.contact_id WHERE NOT c.has_conversation"
    elif noted == "some" and dialect == "postgresql":
        source += (
            " WHERE d.seq NOT IN (SELECT CAST(t AS BIGINT)"
            " FROM json_array_elements_text(CAST(%(talked)s AS json)) t)"
        )
    elif noted == "some":
        source += " WHERE d.seq NOT IN (SELECT value FROM json_each(%(talked)s))"
    else:  # SQLite reads `INSERT … SELECT … ON CONFLICT` right only with a WHERE
        source += " WHERE true"
    if dialect == "postgresql":
        if looked_up:
            source += (
                " AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id = d.contact_id)"
            )
        conflict = ""
    else:  # SQLite keeps ON CONFLICT (the anti-join was measured on PostgreSQL only)
        conflict = " ON CONFLICT (contact_id) DO NOTHING"
    return (
        "INSERT INTO conversations (contact_id, broadcast_id, seq)"
        f" SELECT d.contact_id, %(b)s, d.seq FROM {source}"
        f"{conflict}" + (" RETURNING seq" if returning else "")
    )


@dataclass(frozen=True, slots=True)
class DeliveredRun:
    """A run of adjacent batches of one broadcast, accepted (`record_delivered_together`): batch
    numbers `first_batch`..`last_batch`, seqs `first_seq`..`last_seq`; `skip`, the seqs in it
    whose delivery opens no conversation (the contact had one at the snapshot, or the recipient
    was resolved one by one)."""

    merchant: str
    channel: str
    broadcast: str
    first_batch: int
    last_batch: int
    first_seq: int
    last_seq: int
    skip: tuple[int, ...] = ()
    opens: bool = True  # False: every recipient had a conversation (`skip` unused)


def together(dialect: str) -> bool:
    """Whether `record_delivered_together` serves this database."""
    return dialect == "sqlite"


def record_delivered_together(conn: Connection, runs: Sequence[DeliveredRun], now: int) -> None:
    """SQLite: `record_delivered` for runs of many broadcasts at once (batches whose snapshot
    noted who had a conversation), in two statements in all: the conversations every run
    opened, and an outbox row per run, in the order given. A group commit of thirty-two
    channels' batches had taken two statements per broadcast, each a turn at the interpreter
    for the one writer while the event loop sends."""
    if not runs:
        return
    opening = [r for r in runs if r.opens]
    if opening:  # (a run whose every recipient had a conversation opens none: a repeat send)
        skip = bulk.json_param([[r.broadcast, q] for r in opening for q in r.skip])
        conn.execute(bulk.statement(_OPENED_TOGETHER), {"ranges": _ranges(opening), "skip": skip})
    conn.execute(bulk.statement(_OUTBOX_TOGETHER), {"ranges": _ranges(runs), "now": now})


def _ranges(runs: Sequence[DeliveredRun]) -> str:
    """The runs as `_OPENED_TOGETHER`'s and `_OUTBOX_TOGETHER`'s `:ranges`."""
    return bulk.json_param(
        [
            [
                r.broadcast,
                r.first_batch,
                r.last_batch,
                r.merchant,
                r.channel,
                r.first_seq,
                r.last_seq,
            ]
            for r in runs
        ]
    )


# The conversations of many runs (`:ranges`: [broadcast, first batch, last batch, …]) read
# from their batches' arrays, less the (broadcast, seq) pairs of `:skip`; a contact with a
# conversation row keeps it (ON CONFLICT: one created by an earlier delivery, of this
# broadcast or another).
_OPENED_TOGETHER = (
    "WITH s AS MATERIALIZED (SELECT json_extract(j.value, '$[0]') AS b,"
    " json_extract(j.value, '$[1]') AS fb, json_extract(j.value, '$[2]') AS lb"
    " FROM json_each(:ranges) AS j),"
    " k AS MATERIALIZED (SELECT json_extract(j.value, '$[0]') AS b,"
    " json_extract(j.value, '$[1]') AS seq FROM json_each(:skip) AS j)"
    " INSERT INTO conversations (contact_id, broadcast_id, seq)"
    " SELECT e.value, s.b, b.first_seq + e.key FROM s"
    " JOIN batches b ON b.broadcast_id = s.b AND b.batch BETWEEN s.fb AND s.lb"
    " JOIN batch_recipients a ON a.broadcast_id = b.broadcast_id AND a.batch = b.batch"
    " JOIN json_each(a.contact_ids) AS e"
    " LEFT JOIN k ON k.b = s.b AND k.seq = b.first_seq + e.key"
    " WHERE k.seq IS NULL ON CONFLICT (contact_id) DO NOTHING"
)
_OUTBOX_TOGETHER = (
    "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
    " create_time, opened) SELECT json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'),"
    " json_extract(j.value, '$[0]'), json_extract(j.value, '$[5]'),"
    " json_extract(j.value, '$[6]'), :now, NULL FROM json_each(:ranges) AS j ORDER BY j.key"
)


# What a broadcast's lifecycle event records of it (`record_moved`): these columns of
# `broadcasts`, as a statement that moves broadcasts returns them (`moved_returning`).
_MOVED = (
    "merchant_id",
    "channel_id",
    "id",
    "total",
    "sent",
    "failed",
    "excluded",
    "failure_reason",
)


def moved_returning() -> str:
    """SQL: the RETURNING clause of an UPDATE of `broadcasts` whose rows go to `record_moved`
    (qualified: an UPDATE … FROM has columns of the same names)."""
    return "RETURNING " + ", ".join(f"broadcasts.{c} AS {c}" for c in _MOVED)


def record_transitions(
    conn: Connection, broadcasts: Sequence[str], transition: Transition, now: int
) -> None:
    """These broadcasts just made `transition`, in this transaction: a lifecycle event each (the
    kind domain.lifecycle.EVENTS gives it), with the broadcast's counters and failure reason as
    they are now. A few statements per call, whatever the number of broadcasts; called only
    where a broadcast's state changes, never per batch. Where the statement that moved them
    returned them (`moved_returning`), `record_moved` spares the read."""
    if not broadcasts:
        return
    found = conn.execute(
        text(f"SELECT {', '.join(_MOVED)} FROM broadcasts WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        ),
        {"ids": list(broadcasts)},
    ).all()
    record_moved(conn, found, transition, now)


def record_moved(conn: Connection, moved: Sequence[Any], transition: Transition, now: int) -> None:
    """`record_transitions` of broadcasts as the statement that moved them returned them (rows
    of `moved_returning`), in this transaction."""
    if not moved:
        return
    found = sorted(moved, key=lambda r: (r.merchant_id, r.id))
    for merchant in sorted({r.merchant_id for r in found}):  # one order: no deadlock between us
        _serialize_writers(conn, merchant)
    kind = int(lifecycle.EVENTS[transition])
    conn.execute(
        text(
            "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
            " create_time, kind, total, sent, failed, excluded, failure_reason)"
            " VALUES (:m, :ch, :b, 0, 0, :now, :kind, :total, :sent, :failed, :excluded, :reason)"
        ),
        [
            {
                "m": r.merchant_id,
                "ch": r.channel_id,
                "b": r.id,
                "now": now,
                "kind": kind,
                "total": r.total,
                "sent": r.sent,
                "failed": r.failed,
                "excluded": r.excluded,
                "reason": r.failure_reason,
            }
            for r in found
        ],
    )


def record_channel_event(
    conn: Connection, merchant: str, channel: str, kind: EventKind, reason: str, now: int
) -> None:
    """A channel's lifecycle event (CHANNEL_KINDS), in the transaction that makes the change:
    an outbox row naming no broadcast and no recipient, without counters."""
    _serialize_writers(conn, merchant)
    conn.execute(
        text(
            "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
            " create_time, kind, failure_reason) VALUES (:m, :ch, '', 0, 0, :now, :kind, :reason)"
        ),
        {"m": merchant, "ch": channel, "now": now, "kind": int(kind), "reason": reason[:64]},
    )


_RECIPIENT_ROW = 0  # outbox.kind of a row of delivered recipients; else a lifecycle EventKind
_COLUMNS = (
    "seq, kind, channel_id, broadcast_id, first_seq, last_seq, create_time,"
    " total, sent, failed, excluded, failure_reason, opened"
)


@functools.cache
def _rows_sql(dialect: str, recipients: bool, kinds: frozenset[EventKind] | None, by: bool) -> str:
    """The read of a merchant's outbox rows from a row on, for a filter: of `kinds` (None: every
    lifecycle kind; rows of recipients too if `recipients`), of one broadcast if `by`."""
    where = ["merchant_id = %s", "seq >= %s"]
    index = "ix_outbox_merchant"
    if by:
        where.append("broadcast_id = %s")
        index = "ix_outbox_broadcast"
    lifecycle_kinds = sorted(int(k) for k in (LIFECYCLE_KINDS if kinds is None else kinds))
    if not recipients:
        # The partial index's own condition, so both databases may read it.
        where.append(f"kind <> {_RECIPIENT_ROW}")
        if not by:
            index = "ix_outbox_lifecycle"
    if kinds is not None:
        where.append(
            f"kind IN ({', '.join(map(str, [_RECIPIENT_ROW] * recipients + lifecycle_kinds))})"
        )
    # Without statistics SQLite may take either of two indexes of the same shape: it is told.
    hint = f" INDEXED BY {index}" if dialect == "sqlite" else ""
    return f"SELECT {_COLUMNS} FROM outbox{hint} WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s"


@functools.cache
def _recipients_sql(dialect: str, only_created: bool) -> str:
    """An outbox row's delivered recipients (`%(b)s`, seq [`%(lo)s`, `%(hi)s`]), the first
    `%(limit)s`, with whether their delivery created their conversation; `only_created`: only
    those. Otherwise they are limited (`_limited_sql`) before their conversations are looked
    up, one index probe each: a page that ends inside a row probes only what it returns."""
    source = batch_recipients.as_batch(dialect)
    if only_created:
        return (
            f"SELECT d.seq, d.contact_id, true FROM ({source}) d JOIN conversations v"
            " ON v.contact_id = d.contact_id AND v.broadcast_id = %(b)s AND v.seq = d.seq"
            " ORDER BY d.seq LIMIT %(limit)s"
        )
    return (
        f"SELECT d.seq, d.contact_id, v.contact_id IS NOT NULL FROM ({_limited_sql(dialect)}) d"
        " LEFT JOIN conversations v ON v.contact_id = d.contact_id AND v.broadcast_id = %(b)s"
        " AND v.seq = d.seq ORDER BY d.seq"
    )


@functools.cache
def _limited_sql(dialect: str) -> str:
    """The first `%(limit)s` (NULL: all) delivered recipients of an outbox row (`%(b)s`, seq
    [`%(lo)s`, `%(hi)s`]), as (seq, contact id)."""
    source = batch_recipients.as_batch(dialect)
    # LIMIT NULL is no limit on PostgreSQL; SQLite reads a negative one so.
    limit = "%(limit)s" if dialect == "postgresql" else "COALESCE(%(limit)s, -1)"
    return f"SELECT a.seq, a.contact_id FROM ({source}) a ORDER BY a.seq LIMIT {limit}"


# One backward index probe per merchant (a GROUP BY would read every row of each).
_HEAD_SQL = "SELECT CAST(%s AS VARCHAR), (SELECT max(seq) FROM outbox WHERE merchant_id = %s)"


def after(
    conn: Connection,
    merchant: str,
    position: EventPosition,
    limit: int,
    wanted: EventFilter = EVERY_EVENT,
) -> list[Event]:
    """Up to `limit` events after `position` that `wanted` takes, in stream order: the
    merchant's outbox rows from the position's on that can hold them, each recipient row
    expanded with one index range read of its deliveries."""
    recipients, lifecycle_rows = wanted.rows
    if not (recipients or lifecycle_rows):
        return []
    kinds = wanted.kinds
    statement = _rows_sql(
        conn.dialect.name,
        recipients,
        None if kinds is None else kinds & LIFECYCLE_KINDS,
        wanted.broadcast is not None,
    )
    # Which of a recipient's events: both, or only the one the filter names.
    created = kinds is None or EventKind.CONVERSATION_CREATED in kinds
    message = kinds is None or EventKind.BROADCAST_MESSAGE in kinds
    bubbles = _Bubbles(conn)
    found: list[Event] = []
    row = position.row
    while len(found) < limit:
        args: tuple[Any, ...] = (merchant, row)
        if wanted.broadcast is not None:
            args += (wanted.broadcast,)
        ranges = bulk.rows(conn, statement, (*args, _ROWS_AT_ONCE))
        for r in ranges:
            if r[1] == _RECIPIENT_ROW:
                _expand(
                    conn,
                    merchant,
                    r,
                    position,
                    limit - len(found),
                    found,
                    created,
                    message,
                    bubbles,
                )
            elif int(r[0]) > position.row:
                found.append(_lifecycle_event(merchant, r))
            if len(found) >= limit:
                break
        if len(ranges) < _ROWS_AT_ONCE:
            break
        row = int(ranges[-1][0]) + 1
    del found[limit:]
    return found


_MESSAGES_SQL = "SELECT messages FROM broadcasts WHERE id = %s"


class _Bubbles:
    """The bubbles of each broadcast a read's message events name, read once per read."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._found: dict[str, tuple[Message, ...]] = {}

    def of(self, broadcast: str) -> tuple[Message, ...]:
        found = self._found.get(broadcast)
        if found is None:
            rows = bulk.rows(self._conn, _MESSAGES_SQL, (broadcast,))
            found = self._found[broadcast] = decode_messages(rows[0][0]) if rows else ()
        return found


def _lifecycle_event(merchant: str, r: Any) -> Event:
    row, kind, channel, broadcast, _, _, create_time, total, sent, failed, excluded, reason = r[:12]
    return Event(
        EventPosition(int(row), 0, 1),
        merchant,
        channel,
        "",
        broadcast,
        EventKind(kind),
        from_us(create_time),
        # A channel's events have no counters.
        None if total is None else Counters(int(total), int(sent), int(failed), int(excluded)),
        reason or "",
    )


def _expand(
    conn: Connection,
    merchant: str,
    r: Any,
    position: EventPosition,
    limit: int,
    out: list[Event],
    with_created: bool = True,
    with_message: bool = True,
    bubbles: _Bubbles | None = None,
) -> None:
    """Append the events of outbox row `r` after `position` to `out`: at least `limit` if it
    has them (of the recipient kinds asked for)."""
    row, _, channel, broadcast, first, last_seq, create_time = r[:7]
    row = int(row)
    resumes = row == position.row
    if resumes:
        first = position.seq
    args = {"b": broadcast, "lo": first, "hi": last_seq, "limit": limit + 1}
    if r[12] is None:  # no list of what it opened (SQLite, or an earlier release): look up
        found = bulk.rows(conn, _recipients_sql(conn.dialect.name, not with_message), args)
    else:
        listed = set(json.loads(r[12]))
        if with_message:
            taken = bulk.rows(conn, _limited_sql(conn.dialect.name), args)
        else:  # only those it opened conversations for: the row's all, then filtered
            taken = bulk.rows(conn, _limited_sql(conn.dialect.name), {**args, "limit": None})
            taken = [t for t in taken if t[0] in listed][: limit + 1]
        found = [(seq, contact, seq in listed) for seq, contact in taken]
    when = from_us(create_time)
    created, message = EventKind.CONVERSATION_CREATED, EventKind.BROADCAST_MESSAGE
    sent = bubbles.of(broadcast) if with_message and bubbles is not None and found else ()
    start = len(out)
    append = out.append
    for seq, contact, opened in found:
        if opened and with_created:
            append(Event(EventPosition(row, seq, 0), merchant, channel, contact, broadcast,
                         created, when))  # fmt: skip
        if with_message:
            append(Event(EventPosition(row, seq, 1), merchant, channel, contact, broadcast,
                         message, when, None, "", sent))  # fmt: skip
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
