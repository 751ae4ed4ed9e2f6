"""The dispatcher's tables: channel leases, claiming batches, and recording what became of them.

Every outcome is recorded in one transaction with the delivery outcomes, the broadcast's
counters, the Message Center events and, for the last batch, the broadcast's completion and its
lifecycle event (the invariants of dispatch in docs/architecture.md). A delivery's outcome is
written when it is resolved on its own (refused, not sent, unknown); one still PENDING in a done
batch was sent with it (see tables.DeliveryRow). Recording is idempotent: a batch moves from
open to done once, and whoever moves it updates the counters; a second recorder (a process that
lost its lease while a request was in flight) finds it done and changes nothing.

A broadcast's state changes only as domain.lifecycle allows: each UPDATE of it takes its
state guard and its new state from that table, and each that changes a state records the
transition's event (store.events.record_transitions) in its transaction. Times come and go as
datetimes; the tables hold integer microseconds.
"""

from __future__ import annotations

import bisect
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from broadcaster.domain import lifecycle
from broadcaster.domain.deliveries import DeliveryOutcome, unsent_when_failed
from broadcaster.domain.lifecycle import BroadcastState, Transition
from broadcaster.domain.messages import Message
from broadcaster.domain.recipients import Recipients
from broadcaster.store import batch_recipients, bulk, events, statistics
from broadcaster.store.batch_recipients import DONE, IS_OPEN
from broadcaster.store.bubbles import decode_messages
from broadcaster.store.clock import from_us, to_us

_PENDING = int(DeliveryOutcome.PENDING)
_RESOLVED = [int(o) for o in DeliveryOutcome if o is not DeliveryOutcome.PENDING]
_SENDING = int(BroadcastState.SENDING)
_FAILURES = frozenset({DeliveryOutcome.FAILED, DeliveryOutcome.UNKNOWN})


def _states(states: frozenset[BroadcastState]) -> str:
    """The states as a SQL list, for `state IN (…)`."""
    return ", ".join(str(int(s)) for s in sorted(states))


_COMPLETE = lifecycle.TABLE[Transition.COMPLETE]


def _live(channel: str) -> str:
    """SQL: the channel whose id is the SQL expression `channel` is connected (not deleted)."""
    return f"EXISTS (SELECT 1 FROM channels ch WHERE ch.id = {channel} AND ch.delete_time IS NULL)"


# The channel `:ch` is connected: nothing is claimed or sent for a deleted one.
_LIVE_CHANNEL = _live(":ch")


@dataclass(frozen=True, slots=True)
class ClaimedBatch:
    merchant: str
    broadcast: str
    channel: str
    batch: int
    idempotency_key: str
    first_seq: int
    size: int
    attempts: int  # this attempt included
    first_attempt_time: datetime
    messages: tuple[Message, ...]  # the broadcast's bubbles
    recipients: Recipients  # the external ids still pending, in seq order
    # The W3C traceparent of the call that started the broadcast, if it was traced.
    trace_parent: str | None = None
    notification_disabled: bool = False  # the broadcast is a silent send
    # The seqs of its recipients whose contact had a conversation when the snapshot was taken
    # (store.batch_recipients.talked); None if not noted (a batch of an earlier layout). Read
    # with the recipients, so that recording the batch reads nothing more of it.
    talked: tuple[int, ...] | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.size - 1

    @property
    def all_talked(self) -> bool:
        """Every recipient's contact had a conversation when the snapshot was taken."""
        return self.talked is not None and len(self.talked) == self.size


def acquire_channel(
    conn: Connection, channel: str, owner: str, until: datetime, now: datetime
) -> bool:
    """Take or renew the channel's dispatch lease until `until`; False while another owner
    holds it."""
    return bool(acquire_channels(conn, [(channel, owner)], until, now))


def acquire_channels(
    conn: Connection, wanted: Sequence[tuple[str, str]], until: datetime, now: datetime
) -> list[str]:
    """Take or renew the dispatch lease of each (channel, owner) of `wanted` (each channel
    once) until `until`, in one statement: a process taking many channels at once (many
    merchants sent at the same moment) waits for the writer once, not once per channel. A
    lease another owner holds and has not let lapse stays theirs. Returns the channels taken,
    in the order asked."""
    if not wanted:
        return []
    statement = bulk.statement(
        "INSERT INTO channel_leases (channel_id, owner, expiry)"
        f" SELECT {bulk.json_text(conn, 0)}, {bulk.json_text(conn, 1)}, :until"
        f" FROM {bulk.json_table(conn, 'w')} WHERE true"
        " ON CONFLICT (channel_id) DO UPDATE SET owner = excluded.owner, expiry = excluded.expiry"
        " WHERE channel_leases.owner = excluded.owner OR channel_leases.expiry < :now"
        " RETURNING channel_id"
    )
    pairs = bulk.json_param([list(w) for w in wanted])
    found = conn.execute(statement, {"w": pairs, "until": to_us(until), "now": to_us(now)})
    taken = set(found.scalars())
    return [c for c, _ in wanted if c in taken]


def renew_channel(conn: Connection, channel: str, owner: str, until: datetime) -> bool:
    """Extend the lease `owner` holds until `until`; False if it lost it, or if the channel was
    disconnected since (a replica learns of a DeleteChannel elsewhere this way, within one
    renewal period)."""
    return channel in renew_channels(conn, [(channel, owner)], until)


def renew_channels(conn: Connection, held: Sequence[tuple[str, str]], until: datetime) -> set[str]:
    """Extend each lease of `held` (channel, owner) until `until`, in one statement: a process
    sending on many channels renews them all with one write per renewal period, not one per
    channel. Returns the channels renewed; a channel left out lost its lease to another owner,
    or was disconnected (`channel_live` tells which)."""
    if not held:
        return set()
    statement = bulk.statement(
        "UPDATE channel_leases SET expiry = :until WHERE (channel_id, owner) IN"
        f" (SELECT {bulk.json_text(conn, 0)}, {bulk.json_text(conn, 1)}"
        f" FROM {bulk.json_table(conn, 'w')}) AND {_live('channel_leases.channel_id')}"
        " RETURNING channel_id"
    )
    pairs = bulk.json_param([list(h) for h in held])
    return set(conn.execute(statement, {"w": pairs, "until": to_us(until)}).scalars())


def channel_live(conn: Connection, channel: str) -> bool:
    """Whether the channel is still connected (not deleted)."""
    return (
        conn.execute(text(f"SELECT 1 WHERE {_LIVE_CHANNEL}"), {"ch": channel}).first() is not None
    )


def release_channel(
    conn: Connection, channel: str, owner: str, *, unless_open: bool = False
) -> bool:
    """`owner`'s lease of the channel goes; with `unless_open`, only if no batch of the channel
    is open. Returns whether it went."""
    idle = (
        f" AND NOT EXISTS (SELECT 1 FROM batches WHERE channel_id = :ch AND {IS_OPEN})"
        if unless_open
        else ""
    )
    gone = conn.execute(
        text(f"DELETE FROM channel_leases WHERE channel_id = :ch AND owner = :o{idle}"),
        {"ch": channel, "o": owner},
    ).rowcount
    return bool(gone)


def leave_channel(
    conn: Connection, channel: str, owner: str, unsent: Sequence[tuple[str, int]] = ()
) -> None:
    """`owner` stops dispatching the channel: its lease goes, and so do the leases of the open
    batches it claimed (their keys stay), so the next holder takes the channel and those
    batches at once, without waiting for either lease to lapse. `unsent`: the claimed batches
    it never sent (undo_claims). Called once the owner's sends have all ended."""
    undo_claims(conn, owner, unsent)
    conn.execute(
        text(
            "UPDATE batches SET lease_owner = '', lease_expiry = 0"
            f" WHERE channel_id = :ch AND {IS_OPEN} AND lease_owner = :o"
        ),
        {"ch": channel, "o": owner},
    )
    release_channel(conn, channel, owner)


def undo_claims(conn: Connection, owner: str, unsent: Sequence[tuple[str, int]]) -> None:
    """`owner` claimed these (broadcast, batch) and never sent them: each claim is taken back.
    A claim counts as an attempt, as the claimer may have sent the batch before it died; one
    whose owner knows it did not is not an attempt. A batch never attempted then is sent by
    the next holder as a first attempt; and, if its broadcast ended meanwhile (cancelled, or
    failed: the end left the batch open while it was claimed), it is closed as not sent, as
    the end closed the others. A batch another owner has claimed since is left as it is."""
    if not unsent:
        return
    c = [bulk.json_text(conn, i) for i in range(2)]
    undone = conn.execute(
        bulk.statement(
            "UPDATE batches SET attempts = batches.attempts - 1, first_attempt_time ="
            " CASE WHEN batches.attempts <= 1 THEN NULL ELSE batches.first_attempt_time END"
            f" FROM (SELECT {c[0]} AS b, CAST({c[1]} AS INTEGER) AS n"
            f" FROM {bulk.json_table(conn, 'w')}) w"
            f" WHERE batches.broadcast_id = w.b AND batches.batch = w.n AND batches.{IS_OPEN}"
            " AND batches.lease_owner = :o AND batches.attempts >= 1"
            " RETURNING batches.broadcast_id"
        ),
        {"w": bulk.json_param([[b, n] for b, n in unsent]), "o": owner},
    )
    _close_unattempted_of_ended(conn, sorted(set(undone.scalars())))


def _close_unattempted_of_ended(conn: Connection, broadcasts: list[str]) -> None:
    """Close the never-attempted open batches of those of `broadcasts` that have ended
    (cancelled or failed), their recipients not sent for the reason they ended."""
    if not broadcasts:
        return
    ended = _states(frozenset({BroadcastState.CANCELLED, BroadcastState.FAILED}))
    found = conn.execute(
        bulk.statement(
            "SELECT id, state, failure_reason FROM broadcasts"
            f" WHERE {bulk.in_strings(conn, 'id', 'ids')} AND state IN ({ended})"
        ),
        {"ids": bulk.strings_param(conn, broadcasts)},
    )
    for broadcast, state, reason in found.all():
        cancelled = BroadcastState(state) is BroadcastState.CANCELLED
        outcome = DeliveryOutcome.NOT_SENT_CANCELLED if cancelled else unsent_when_failed(reason)
        _close_unattempted(conn, str(broadcast), outcome)


def cancelled_among(conn: Connection, broadcasts: list[str]) -> set[str]:
    """Those of `broadcasts` that were cancelled."""
    cancelled = int(BroadcastState.CANCELLED)
    found = conn.execute(
        bulk.statement(
            f"SELECT id FROM broadcasts WHERE state = {cancelled}"
            f" AND {bulk.in_strings(conn, 'id', 'ids')}"
        ),
        {"ids": bulk.strings_param(conn, broadcasts)},
    )
    return {str(b) for (b,) in found}


def claim(
    conn: Connection,
    *,
    channel: str,
    owner: str,
    lease_until: datetime,
    now: datetime,
    limit: int,
) -> list[ClaimedBatch]:
    """Lease up to `limit` due batches of the channel, with their pending recipients and their
    broadcast's messages (decoded once per broadcast); none of a deleted channel.

    The channel's broadcasts take turns (the rule in docs/architecture.md): the open batches
    with the lowest numbers go first, ties by broadcast, so every sending broadcast advances
    one batch at a time, and one sent while another is half-way starts at once and catches up
    instead of waiting behind it.

    Only the channel's lease holder calls this, so a batch leased by another owner belongs to
    a process that lost its lease: it is taken over, key and all. Batches of a cancelled or
    failed broadcast are taken only if they were attempted already: an attempt may have been
    accepted, so it is resolved with the same key rather than abandoned."""
    now_us, until_us = to_us(now), to_us(lease_until)
    select, lease = _claim_sql(conn.dialect.name)
    args = {"ch": channel, "now": now_us, "owner": owner, "limit": limit}
    rows = [_Claimable._make(r) for r in bulk.rows(conn, select, args)]
    by_broadcast: dict[str, list[_Claimable]] = {}
    for r in rows:
        by_broadcast.setdefault(r.broadcast_id, []).append(r)
    pending: dict[tuple[str, int], Recipients] = {}
    messages: dict[str, tuple[Message, ...]] = {}
    for broadcast, claimed in by_broadcast.items():
        messages[broadcast] = decode_messages(claimed[0].messages)
        # One statement leases all of a broadcast's claimed batches, and returns for each the
        # seqs of its recipients resolved one by one since (usually none). Their recipients
        # come with them (store.batch_recipients), less those; a batch of the earlier layout
        # takes its slice of one range read of delivery rows per run instead.
        batch_numbers = [int(r.batch) for r in claimed]
        leased = bulk.rows(
            conn,
            lease,
            {
                "b": broadcast,
                "n": batch_numbers
                if conn.dialect.name == "postgresql"
                else bulk.json_param(batch_numbers),
                "owner": owner,
                "until": until_us,
                "now": now_us,
            },
        )
        on_batch = [r for r in claimed if r.external_ids is not None]
        as_rows = [r for r in claimed if r.external_ids is None]
        if on_batch:
            # Recipients kept on the batch: all of them but those resolved one by one since,
            # which the lease returns for each batch (as a rule none). As a rule the stored
            # array goes to the channel as it is (domain.recipients), decoded only if something
            # reads the ids one by one.
            resolved = {int(n): str(seqs) for n, seqs in leased if seqs}
            for r in on_batch:
                first, size, array = int(r.first_seq), int(r.size), str(r.external_ids)
                gone = resolved.get(int(r.batch))
                if gone is None:  # as a rule
                    pending[(broadcast, int(r.batch))] = Recipients.stored(array, size)
                    continue
                skip = {int(seq) for seq in gone.split(",")}
                stored = batch_recipients.decode(array)
                pending[(broadcast, int(r.batch))] = Recipients(
                    external for i, external in enumerate(stored) if first + i not in skip
                )
        if as_rows:
            # The earlier layout: recipients as delivery rows, still PENDING.
            spans = sorted((int(r.first_seq), int(r.first_seq) + int(r.size) - 1) for r in as_rows)
            found: list[tuple[int, str]] = []
            for lo, hi in _runs(spans):
                found += bulk.rows(conn, _PENDING_SQL, (broadcast, lo, hi, _PENDING))
            seqs = [seq for seq, _ in found]
            for r in as_rows:
                first = int(r.first_seq)
                at = bisect.bisect_left(seqs, first)
                to = bisect.bisect_right(seqs, first + int(r.size) - 1, lo=at)
                pending[(broadcast, int(r.batch))] = Recipients(e for _, e in found[at:to])
    return [
        ClaimedBatch(
            merchant=r.merchant_id,
            broadcast=r.broadcast_id,
            channel=channel,
            batch=r.batch,
            idempotency_key=r.idempotency_key,
            first_seq=r.first_seq,
            size=r.size,
            attempts=r.attempts + 1,
            first_attempt_time=(
                now if r.first_attempt_time is None else from_us(r.first_attempt_time)
            ),
            messages=messages[r.broadcast_id],
            recipients=pending[(r.broadcast_id, int(r.batch))],
            trace_parent=r.trace_parent,
            notification_disabled=bool(r.notification_disabled),
            talked=_talked(r),
        )
        for r in rows
    ]


def claim_or_leave(
    conn: Connection,
    *,
    channel: str,
    owner: str,
    lease_until: datetime,
    now: datetime,
    limit: int,
) -> tuple[list[ClaimedBatch], bool]:
    """`claim`, by a lease holder with nothing in flight on the channel, and whether it left the
    channel: when it finds nothing to claim and nothing open on the channel, its lease goes in
    the same transaction (as `leave_channel`, which then has nothing else to let go: no batch
    is open). Nothing claimed and not left: open batches none of which is due yet.

    A channel's run ended in three transactions before (the claim that found nothing, a read
    of its open batches, then `leave_channel`), three of the six and a half a broadcast
    took from Send to SENT. The lease goes by a statement that lets it go only if nothing is
    open; the open batches are read only if it stays (or was not this owner's to let go)."""
    claimed = claim(
        conn, channel=channel, owner=owner, lease_until=lease_until, now=now, limit=limit
    )
    if claimed:
        return claimed, False
    left = release_channel(conn, channel, owner, unless_open=True)
    return [], left or not sending_on(conn, channel)


class _Claimable(NamedTuple):
    """A row of `claim`'s read: a due batch, with its recipients and its broadcast's own."""

    broadcast_id: str
    batch: int
    idempotency_key: str
    first_seq: int
    size: int
    attempts: int
    first_attempt_time: int | None
    external_ids: str | None
    talked: str | None
    merchant_id: str
    messages: str
    trace_parent: str | None
    notification_disabled: bool


@functools.cache
def _claim_sql(dialect: str) -> tuple[str, str]:
    """`claim`'s read of due batches and its lease of a broadcast's batches among them, with
    `%(name)s` placeholders: run on the driver's cursor (bulk.rows, bulk.write), written once.
    A channel claims many times a second at its ceiling, and building each statement and its
    result through SQLAlchemy had cost more than running them (cProfile: about half of a
    claim's CPU, on either database)."""
    lock = " FOR UPDATE OF b SKIP LOCKED" if dialect == "postgresql" else ""
    batches, arrays = batch_recipients.with_arrays(dialect)
    select = (
        "SELECT b.broadcast_id, b.batch, b.idempotency_key, b.first_seq, b.size, b.attempts,"
        f" b.first_attempt_time, {arrays}.external_ids, {arrays}.talked, br.merchant_id,"
        " br.messages, br.trace_parent, br.notification_disabled"
        f" FROM {batches} JOIN broadcasts br ON br.id = b.broadcast_id"
        f" WHERE b.channel_id = %(ch)s AND b.{IS_OPEN} AND b.due_time <= %(now)s"
        " AND (b.lease_expiry < %(now)s OR b.lease_owner <> %(owner)s)"
        f" AND (br.state = {_SENDING} OR b.first_attempt_time IS NOT NULL)"
        f" AND {_live('%(ch)s')}"
        f" ORDER BY b.batch, b.broadcast_id LIMIT %(limit)s{lock}"
    )
    numbers = (
        "batch = ANY(%(n)s)"
        if dialect == "postgresql"
        else "batch IN (SELECT value FROM json_each(%(n)s))"
    )
    # The lease returns each batch's recipients resolved one by one since the snapshot (their
    # seqs, comma-separated; NULL as a rule): a claim had read them in a statement of its own,
    # one of every three a claim made.
    seqs = (
        "string_agg(CAST(d.seq AS TEXT), ',')" if dialect == "postgresql" else "group_concat(d.seq)"
    )
    lease = (
        "UPDATE batches SET lease_owner = %(owner)s, lease_expiry = %(until)s,"
        " attempts = attempts + 1, first_attempt_time = COALESCE(first_attempt_time, %(now)s)"
        f" WHERE broadcast_id = %(b)s AND {numbers}"
        f" RETURNING batch, (SELECT {seqs} FROM deliveries d"
        " WHERE d.broadcast_id = batches.broadcast_id"
        " AND d.seq BETWEEN batches.first_seq AND batches.first_seq + batches.size - 1"
        f" AND d.outcome IN ({', '.join(map(str, _RESOLVED))}) AND d.outcome <> 0)"
    )
    return select, lease


def _talked(r: _Claimable) -> tuple[int, ...] | None:
    """A claimed batch's `talked` (ClaimedBatch): None for a batch whose recipients are rows
    of `deliveries` (the earliest layout), or whose snapshot did not note them."""
    if r.external_ids is None:
        return None
    noted = batch_recipients.decode_seqs(r.talked)
    return None if noted is None else tuple(noted)


_PENDING_SQL = (
    "SELECT seq, external_id FROM deliveries WHERE broadcast_id = %s"
    " AND seq BETWEEN %s AND %s AND outcome = %s ORDER BY seq"
)


def _close_batch(conn: Connection, broadcast: str, batch: int) -> bool:
    """Mark the batch done; False if it was done already (recorded by another process)."""
    return bool(_close_batches(conn, [(broadcast, batch)]))


def _set_pending(
    conn: Connection,
    broadcast: str,
    lo: int,
    hi: int,
    outcome: DeliveryOutcome,
    reason: str,
    external_ids: Sequence[str] | None = None,
) -> int:
    """Give the recipients in seq [lo, hi] still "as their batch" (of them, those named by
    `external_ids`, if given) an outcome of their own; returns how many. Rows of the earlier
    layout are updated; recipients kept on their batch get a row."""
    params: dict[str, Any] = {"o": int(outcome), "r": reason, "b": broadcast, "lo": lo, "hi": hi}
    named = named_x = ""
    if external_ids is not None:
        named = f" AND {bulk.in_strings(conn, 'external_id', 'ids')}"
        named_x = f" WHERE {bulk.in_strings(conn, 'x.external_id', 'ids')}"
        params["ids"] = bulk.strings_param(conn, list(external_ids))
    updated = conn.execute(
        bulk.statement(
            "UPDATE deliveries SET outcome = :o, reason = :r WHERE broadcast_id = :b"
            f" AND seq BETWEEN :lo AND :hi AND outcome = {_PENDING}{named}"
        ),
        params,
    ).rowcount
    pending = bulk.named(batch_recipients.as_batch(conn.dialect.name, externals=True))
    inserted = conn.execute(
        bulk.statement(
            "INSERT INTO deliveries (broadcast_id, seq, contact_id, external_id, outcome, reason)"
            f" SELECT :b, x.seq, x.contact_id, x.external_id, :o, :r FROM ({pending}) x{named_x}"
        ),
        params,
    ).rowcount
    return int(updated) + int(inserted)


def _count(
    conn: Connection, broadcast: str, now: int, *, sent: int = 0, failed: int = 0, batches: int = 1
) -> Any | None:
    """Add to the counters of closed batches' broadcast (`now` in µs); the last batch completes
    it. Returns the broadcast if it completed, as its lifecycle event records it (the event is
    the caller's to record, events.record_moved, after the recipient events of these
    batches); else None."""
    return _count_many(conn, {broadcast: (sent, failed, batches)}, now).get(broadcast)


def _count_many(
    conn: Connection, counts: dict[str, tuple[int, int, int]], now: int
) -> dict[str, Any]:
    """`_count` for many broadcasts, two statements whatever their number: `counts` gives each
    broadcast's (sent, failed, batches closed). Returns those that completed, each as its
    lifecycle event records it (events.record_moved)."""
    c = [bulk.json_text(conn, i) for i in range(4)]
    conn.execute(
        bulk.statement(
            "UPDATE broadcasts SET sent = broadcasts.sent + CAST(s.more_sent AS BIGINT),"
            " failed = broadcasts.failed + CAST(s.more_failed AS BIGINT),"
            " open_batches = broadcasts.open_batches - CAST(s.closed AS INTEGER),"
            " update_time = :now"
            f" FROM (SELECT {c[0]} AS id, {c[1]} AS more_sent, {c[2]} AS more_failed,"
            f" {c[3]} AS closed"
            f" FROM {bulk.json_table(conn, 'rows')}) s WHERE broadcasts.id = s.id"
        ),
        {"rows": bulk.json_param([[b, *n] for b, n in counts.items()]), "now": now},
    )
    completed = conn.execute(
        bulk.statement(
            f"UPDATE broadcasts SET state = {int(_COMPLETE.target)}, complete_time = :now"
            f" WHERE {bulk.in_strings(conn, 'id', 'ids')}"
            f" AND state IN ({_states(_COMPLETE.sources)}) AND open_batches = 0"
            f" {events.moved_returning()}"
        ),
        {"now": now, "ids": bulk.strings_param(conn, list(counts))},
    )
    return {r.id: r for r in completed}


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What the channel said of an accepted batch besides accepting it: its id for the request
    (kept on the batch), and the broadcast's statistics (store.statistics)."""

    request_id: str = ""
    statistics: statistics.Tag | None = None


def record_sent(
    conn: Connection,
    accepted_at: Sequence[tuple[ClaimedBatch, datetime, Acceptance]],
) -> list[int]:
    """The channel accepted these batches (each with the time it did; now or on an earlier
    attempt): their pending recipients are sent, with their Message Center events. Returns how
    many recipients each batch sent (0: it was recorded already). Several batches take a few
    statements in all rather than per batch (closing the batches, reading their refused
    recipients and moving the counters, for every broadcast at once), then the conversations
    and events of each broadcast's ranges: at the channels' ceilings, per-statement round trips
    (and on SQLite, each statement's turn at the interpreter) are what limit recording.

    Their delivery rows stay as they are (PENDING, "as its batch"): the done batches say they
    were sent, so 500 recipients cost one batch row, the conversations they open and a share
    of one outbox row, rather than 500 updated rows and up to 1,000 event rows."""
    accepted = [c for c, _, _ in accepted_at]
    when = max(t for _, t, _ in accepted_at)
    now = to_us(when)
    said = {(c.broadcast, c.batch): a for c, _, a in accepted_at}
    closed = _close_batches(
        conn, [(c.broadcast, c.batch) for c in accepted], {k: a.request_id for k, a in said.items()}
    )
    by_broadcast: dict[str, list[ClaimedBatch]] = {}
    for c in accepted:
        if (c.broadcast, c.batch) in closed:
            by_broadcast.setdefault(c.broadcast, []).append(c)
    for done in by_broadcast.values():
        done.sort(key=lambda c: c.first_seq)
    spans = {
        b: _runs([(c.first_seq, c.last_seq) for c in done]) for b, done in by_broadcast.items()
    }
    # In a claimed batch, recipients resolved one by one are those refused as invalid.
    refused = _resolved_in(conn, spans)
    sent: dict[tuple[str, int], int] = {}
    totals: dict[str, int] = {}
    for broadcast, done in by_broadcast.items():
        for c in done:
            sent[(broadcast, c.batch)] = c.size - sum(
                c.first_seq <= q <= c.last_seq for q in refused.get(broadcast, ())
            )
        totals[broadcast] = sum(sent[(broadcast, c.batch)] for c in done)
    completed = (
        _count_many(conn, {b: (totals[b], 0, len(done)) for b, done in by_broadcast.items()}, now)
        if by_broadcast
        else {}
    )
    together: list[events.DeliveredRun] = []
    singly: list[tuple[ClaimedBatch, list[tuple[int, int]], list[int] | None]] = []
    noted: list[statistics.Noted] = []
    for broadcast, done in by_broadcast.items():
        total = totals[broadcast]
        tags = [t for c in done if (t := said[(broadcast, c.batch)].statistics) is not None]
        if tags and total:
            first = broadcast in completed or done[0].batch == 0 or any(t.first for t in tags)
            noted.append(statistics.Noted(broadcast, done[0].channel, tags, first))
        if not total:
            continue
        talked_in = [c.talked for c in done]
        if None not in talked_in and events.together(conn.dialect.name):
            together += _delivered_runs(done, refused.get(broadcast, ()))
            continue
        talked = None if None in talked_in else [s for t in talked_in if t for s in t]
        singly.append((done[0], spans[broadcast], talked))
    statistics.noted(conn, noted, when)
    _delivered(conn, singly, now)
    events.record_delivered_together(conn, together, now)
    finished = [completed[b] for b in by_broadcast if b in completed]
    if finished:  # each after its last recipients' events
        events.record_moved(conn, finished, Transition.COMPLETE, now)
    return [sent.get((c.broadcast, c.batch), 0) for c in accepted]


# PostgreSQL: broadcasts whose recipients were found to have conversations from other
# broadcasts (`_delivered`), whose deliveries in this process look them up from then on. A
# cache: lost on a restart, emptied when it grows past its bound; races between threads only
# cost a savepoint.
_LOOKED_UP: dict[str, None] = {}
_LOOKED_UP_MOST = 10_000


def _delivered_runs(
    done: Sequence[ClaimedBatch], refused: Sequence[int]
) -> list[events.DeliveredRun]:
    """A broadcast's accepted batches (in seq order, each with `talked` noted) as runs of
    adjacent batches, each skipping the seqs of its contacts that had a conversation and of
    its recipients refused one by one (`refused`)."""
    runs: list[list[ClaimedBatch]] = []
    for c in done:
        if runs and runs[-1][-1].last_seq + 1 == c.first_seq:
            runs[-1].append(c)
        else:
            runs.append([c])
    made = []
    for run in runs:
        lo, hi = run[0].first_seq, run[-1].last_seq
        # Every recipient had a conversation (a repeat send to an audience that talks): no
        # seqs to skip one by one. (Building and matching 500 of them a batch had made such a
        # send cost the service a third more CPU than a first one.)
        opens = not all(c.all_talked for c in run)
        skip = (
            [q for c in run for q in c.talked or ()] + [q for q in refused if lo <= q <= hi]
            if opens
            else []
        )
        first = run[0]
        made.append(
            events.DeliveredRun(
                merchant=first.merchant,
                channel=first.channel,
                broadcast=first.broadcast,
                first_batch=first.batch,
                last_batch=run[-1].batch,
                first_seq=lo,
                last_seq=hi,
                skip=tuple(skip),
                opens=opens,
            )
        )
    return made


# The most savepoints a group commit releases (`_delivered`): a PostgreSQL backend keeps track
# of 64 subtransactions of its transaction cheaply; past that every other backend's snapshot
# has to look them up on disk ("subtransaction overflow") until it commits.
_SAVEPOINTS_MOST = 48


def _delivered(
    conn: Connection,
    broadcasts: Sequence[tuple[ClaimedBatch, list[tuple[int, int]], list[int] | None]],
    now: int,
) -> None:
    """`events.record_delivered` for each broadcast (a batch of it, its accepted spans, the
    seqs noted as having had a conversation). On PostgreSQL the conversations of recipients
    are first written without looking for conversation rows (those another broadcast created:
    an earlier one, or one that reached the contact since the snapshot; the snapshot notes
    only conversations of the contact's own), all the broadcasts of the group commit in one
    savepoint: the table's key refuses a recipient who has one. If it does, the savepoint is
    rolled back and each broadcast is written again in a savepoint of its own, those refused
    with the look-up; a broadcast found so is looked up from then on (a repeat broadcast to
    the same audience, after its first group commit). A group commit of 256 outcomes can hold
    that many broadcasts: past `_SAVEPOINTS_MOST`, the rest are written with the look-up at
    once."""
    postgresql = conn.dialect.name == "postgresql"
    trying: list[tuple[functools.partial[None], str]] = []
    for first, spans, talked in broadcasts:
        write = functools.partial(
            events.record_delivered,
            conn,
            merchant=first.merchant,
            channel=first.channel,
            broadcast=first.broadcast,
            spans=spans,
            now=now,
            talked=talked,
        )
        if postgresql and talked is not None and first.broadcast not in _LOOKED_UP:
            trying.append((write, first.broadcast))
        else:
            write()
    if not trying:
        return
    try:
        with conn.begin_nested():
            for write, _ in trying:
                write(looked_up=False)
        return
    except IntegrityError:
        pass
    for i, (write, b) in enumerate(trying):
        if i < _SAVEPOINTS_MOST:
            try:
                with conn.begin_nested():
                    write(looked_up=False)
                continue
            except IntegrityError:
                if len(_LOOKED_UP) >= _LOOKED_UP_MOST:
                    _LOOKED_UP.clear()
                _LOOKED_UP[b] = None
        write()


def _close_batches(
    conn: Connection,
    batches: Sequence[tuple[str, int]],
    request_ids: Mapping[tuple[str, int], str] | None = None,
) -> set[tuple[str, int]]:
    """Mark the open ones of these (broadcast, batch) done, in one statement whatever their
    number, each with the channel's id for its accepted request (`request_ids`; an empty id
    leaves the batch's as it was); returns which (the others were recorded already, by another
    process). It reads nothing of the batches' recipients: what recording needs of them came
    with the claim (ClaimedBatch.talked). (On SQLite `talked` is the last column of a
    `batch_recipients` row, after two arrays that span overflow pages: returning it here read
    the row a second time.)"""
    ids = request_ids or {}
    rows = [[b, n, ids.get((b, n)) or None] for b, n in batches]
    c = [bulk.json_text(conn, i) for i in range(3)]
    closing = bulk.statement(
        "UPDATE batches SET state = :done, lease_owner = '', lease_expiry = 0,"
        " request_id = COALESCE(w.r, batches.request_id)"
        f" FROM (SELECT {c[0]} AS b, CAST({c[1]} AS INTEGER) AS n, {c[2]} AS r"
        f" FROM {bulk.json_table(conn, 'w')}) w"
        f" WHERE batches.broadcast_id = w.b AND batches.batch = w.n AND batches.{IS_OPEN}"
        " RETURNING batches.broadcast_id, batches.batch"
    )
    closed = conn.execute(closing, {"done": DONE, "w": bulk.json_param(rows)})
    return {(str(b), int(n)) for b, n in closed}


def _resolved_in(
    conn: Connection, spans: Mapping[str, Sequence[tuple[int, int]]]
) -> dict[str, list[int]]:
    """Seqs in each broadcast's `spans` whose delivery has an outcome of its own (not
    PENDING), for many broadcasts in one read (usually finding nothing)."""
    rows = [[b, lo, hi] for b, runs in spans.items() for lo, hi in runs]
    if not rows:
        return {}
    found: dict[str, list[int]] = {}
    for b, seq in bulk.rows(conn, _resolved_sql(conn.dialect.name), {"s": bulk.json_param(rows)}):
        found.setdefault(str(b), []).append(int(seq))
    return found


@functools.cache
def _resolved_sql(dialect: str) -> str:
    """`_resolved_in`'s read, for the driver's cursor (`%(s)s`: the spans as a JSON array of
    [broadcast, lo, hi]). The list of outcomes is written in: a clause with an expanding list,
    prepared again on every call, had taken most of this read's time (py-spy)."""
    b, lo, hi = (bulk.json_text(dialect, i) for i in range(3))
    return (
        f"SELECT d.broadcast_id, d.seq FROM (SELECT {b} AS b, CAST({lo} AS BIGINT) AS lo,"
        f" CAST({hi} AS BIGINT) AS hi FROM {bulk.json_table(dialect, 's', driver=True)}) s"
        " JOIN deliveries d ON d.broadcast_id = s.b AND d.seq BETWEEN s.lo AND s.hi"
        f" WHERE d.outcome IN ({', '.join(map(str, _RESOLVED))}) AND d.outcome <> 0"
    )


def record_invalid(
    conn: Connection, c: ClaimedBatch, external_ids: Sequence[str], reason: str, now: datetime
) -> int:
    """The channel named some recipients invalid (and sent nothing): they fail with `reason`;
    the batch stays open for the rest. Returns how many failed."""
    failed = _set_pending(
        conn,
        c.broadcast,
        c.first_seq,
        c.last_seq,
        DeliveryOutcome.FAILED,
        reason,
        external_ids=external_ids,
    )
    conn.execute(
        text("UPDATE broadcasts SET failed = failed + :n, update_time = :now WHERE id = :b"),
        {"n": failed, "now": to_us(now), "b": c.broadcast},
    )
    return failed


def record_unresolved(
    conn: Connection, c: ClaimedBatch, outcome: DeliveryOutcome, reason: str, now: datetime
) -> int:
    """The batch ends without being sent (UNKNOWN past the key window, FAILED when the channel
    rejected it, NOT_SENT_* when it never went): its pending recipients count as failed, unless
    they were not sent (they can be resent)."""
    if not _close_batch(conn, c.broadcast, c.batch):
        return 0
    failed = _set_pending(conn, c.broadcast, c.first_seq, c.last_seq, outcome, reason)
    counted = failed if outcome in _FAILURES else 0
    if (completed := _count(conn, c.broadcast, to_us(now), failed=counted)) is not None:
        events.record_moved(conn, [completed], Transition.COMPLETE, to_us(now))
    return failed


def record_stop(
    conn: Connection, c: ClaimedBatch, reason: str, now: datetime, *, quota: bool = False
) -> None:
    """The broadcast cannot go on (`reason`, e.g. QUOTA_EXHAUSTED, CHANNEL_REJECTED): this
    batch's recipients are not sent for want of `quota` (resendable) or else failed, the
    broadcast fails, and its batches never attempted are not sent."""
    if quota:
        record_unresolved(conn, c, DeliveryOutcome.NOT_SENT_QUOTA, "", now)
    else:
        record_unresolved(conn, c, DeliveryOutcome.FAILED, reason, now)
    stop(
        conn,
        c.broadcast,
        Transition.FAIL,
        reason=reason,
        outcome=unsent_when_failed(reason),
        now=now,
    )


def fail_channel(conn: Connection, channel: str, reason: str, now: datetime) -> list[str]:
    """The channel cannot send any more (deleted, or its credentials refused): its sending
    broadcasts fail with `reason` and their batches never attempted are NOT_SENT_STOPPED.
    Attempted batches stay open for whoever holds them to resolve (a batch that never left
    becomes NOT_SENT_STOPPED too); what no one resolves, abandon_channel closes later."""
    failed = []
    for broadcast in sending_on(conn, channel):
        if stop(
            conn,
            broadcast,
            Transition.FAIL,
            reason=reason,
            outcome=DeliveryOutcome.NOT_SENT_STOPPED,
            now=now,
        ):
            failed.append(broadcast)
    return failed


def rekey(conn: Connection, c: ClaimedBatch, owner: str, due: datetime) -> bool:
    """Give a batch that no attempt can have been delivered (every answer so far a definite
    refusal) a fresh idempotency key, due at `due`, and release it: it starts over as if never
    attempted. Committed before the new key is used. False if `owner` no longer holds it."""
    return bool(
        conn.execute(
            text(
                "UPDATE batches SET idempotency_key = :k, attempts = 0, first_attempt_time = NULL,"
                " due_time = :due, lease_owner = '', lease_expiry = 0"
                f" WHERE broadcast_id = :b AND batch = :n AND {IS_OPEN} AND lease_owner = :o"
            ),
            {
                "k": str(uuid.uuid4()),
                "due": to_us(due),
                "b": c.broadcast,
                "n": c.batch,
                "o": owner,
            },
        ).rowcount
    )


def abandon_channel(conn: Connection, channel: str, reason: str, now: datetime) -> list[str]:
    """The channel is gone: its sending broadcasts fail with `reason`, batches never attempted
    are not sent, and attempted ones can no longer be confirmed (OUTCOME_UNKNOWN)."""
    failed = fail_channel(conn, channel, reason, now)
    attempted = conn.execute(
        text(
            "SELECT broadcast_id, batch, first_seq, size FROM batches"
            f" WHERE channel_id = :ch AND {IS_OPEN}"
        ),
        {"ch": channel},
    ).all()
    for b, n, first, size in attempted:
        if _close_batch(conn, b, n):
            lost = _set_pending(conn, b, first, first + size - 1, DeliveryOutcome.UNKNOWN, reason)
            if (completed := _count(conn, b, to_us(now), failed=lost)) is not None:
                events.record_moved(conn, [completed], Transition.COMPLETE, to_us(now))
    return failed


def stop(
    conn: Connection,
    broadcast: str,
    transition: Transition,
    *,
    reason: str,
    outcome: DeliveryOutcome,
    now: datetime,
    only: frozenset[BroadcastState] | None = None,
) -> bool:
    """End a sending (or scheduled) broadcast by `transition` (CANCEL, or FAIL with `reason`),
    with its lifecycle event. Its batches never attempted are closed and their recipients get
    `outcome`; attempted ones stay open until resolved with their key, and keep counting. False
    if its state does not allow it, or is not one of `only` (when given)."""
    rule = lifecycle.TABLE[transition]
    states = rule.sources if only is None else rule.sources & only
    if not states:
        return False
    changed = conn.execute(
        text(
            "UPDATE broadcasts SET state = :state, failure_reason = :reason, complete_time = :now,"
            f" update_time = :now WHERE id = :b AND state IN ({_states(states)})"
        ),
        {"state": int(rule.target), "reason": reason, "now": to_us(now), "b": broadcast},
    ).rowcount
    if not changed:
        return False
    # Closing first: on PostgreSQL the UPDATE waits for a concurrent claim of these batches and
    # then skips them (attempted now), so only batches that will never be sent are closed.
    _close_unattempted(conn, broadcast, outcome)
    events.record_transitions(conn, [broadcast], transition, to_us(now))
    return True


def _close_unattempted(conn: Connection, broadcast: str, outcome: DeliveryOutcome) -> None:
    """Close the broadcast's open batches never attempted, their recipients getting `outcome`
    (a NOT_SENT one: not counted as failed)."""
    closed = conn.execute(
        text(
            f"UPDATE batches SET state = :done WHERE broadcast_id = :b AND {IS_OPEN}"
            " AND first_attempt_time IS NULL RETURNING first_seq, size"
        ),
        {"b": broadcast, "done": DONE},
    ).all()
    if not closed:
        return
    ranges = sorted((int(f), int(f) + int(n) - 1) for f, n in closed)
    for lo, hi in _runs(ranges):
        _set_pending(conn, broadcast, lo, hi, outcome, "")
    conn.execute(
        text("UPDATE broadcasts SET open_batches = open_batches - :n WHERE id = :b"),
        {"n": len(closed), "b": broadcast},
    )


def _runs(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent seq ranges joined: usually the batches never attempted are one run."""
    runs: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if runs and runs[-1][1] + 1 == lo:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    return runs


def sending_on(conn: Connection, channel: str) -> list[str]:
    """Broadcasts with open batches on the channel."""
    rows = conn.execute(
        text(f"SELECT DISTINCT broadcast_id FROM batches WHERE channel_id = :ch AND {IS_OPEN}"),
        {"ch": channel},
    )
    return [str(r[0]) for r in rows]
