"""The recipient snapshot ("Snapshot first" in docs/architecture.md): when Send is accepted,
the audience's reachable contacts become the broadcast's deliveries, numbered and split into
batches, in one set-based statement each; nothing is sent before this commits.

Recipients come from the authoritative join of contacts and group members (not the derived
group_contacts table), and are ordered by contact id so the batches are stable.

With a recipient limit (`cap`), they are numbered instead by most recent interaction (never
interacted last), ties by contact id, in the same statement: the first `cap` are the recipients
(PENDING, in batches) and the rest are written NOT_SENT_LIMIT, after them and in no batch, so
ListDeliveries names them and a resend (unsent_only) goes to them like to any other recipient
never attempted. A capped snapshot thus writes as many rows as the uncapped one would.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from broadcaster.domain.deliveries import UNREACHED, DeliveryOutcome
from broadcaster.domain.model import FollowerState
from broadcaster.store import bulk
from broadcaster.store.audience import Counts
from broadcaster.store.clock import to_us


@dataclass(frozen=True, slots=True)
class Snapshot:
    recipients: int
    opted_out: int  # matched but left out: opted out
    unreachable: int  # matched but left out: blocked the account
    batches: int
    left_out_by_limit: int = 0  # reachable, but past the recipient limit


def _source(since: int | None, group: str | None, resend_of: str | None) -> str:
    """FROM … WHERE … of the audience's contacts (as `c`)."""
    if resend_of is not None:
        # A resend: the recipients the source broadcast did not reach, as they are now, and
        # only those still contacts of this broadcast's channel (a resend cannot change channel,
        # but the snapshot does not rely on that). Driven from the source's deliveries, joining
        # contacts by key: a planner without statistics for a fresh deliveries table otherwise
        # scans the channel's contacts once per delivery.
        unreached = ", ".join(str(int(o)) for o in UNREACHED)
        return (
            "FROM deliveries d JOIN contacts c ON c.id = d.contact_id"
            f" WHERE d.broadcast_id = :source AND d.outcome IN ({unreached}) AND d.outcome <> 0"
            " AND c.merchant_id = :m AND c.channel_id = :ch"
        )
    where = "c.merchant_id = :m AND c.channel_id = :ch"
    if since is not None:
        where += " AND c.last_interaction_time >= :since"
    if group is not None:
        where += (
            " AND c.customer_id IN"
            " (SELECT g.customer_id FROM customer_group_members g WHERE g.group_id = :group)"
        )
    return f"FROM contacts c WHERE {where}"


def _count(conn: Connection, source: str, params: Mapping[str, object]) -> Counts:
    blocked = int(FollowerState.BLOCKED)
    matched, opted_out, unreachable = conn.execute(
        bulk.statement(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN c.opted_out THEN 1 ELSE 0 END), 0),"
            f" COALESCE(SUM(CASE WHEN NOT c.opted_out AND c.follower_state = {blocked}"
            f" THEN 1 ELSE 0 END), 0) {source}"
        ),
        params,
    ).one()
    return Counts(int(matched), int(opted_out), int(unreachable))


def count_resend(conn: Connection, merchant: str, channel: str, source: str) -> Counts:
    """A resend's audience as the snapshot will see it: the contacts of `channel` the source
    broadcast did not reach, as they are now."""
    params = {"source": source, "m": merchant, "ch": channel}
    return _count(conn, _source(None, None, source), params)


def take(
    conn: Connection,
    *,
    merchant: str,
    channel: str,
    broadcast: str,
    since: datetime | None,
    group: str | None,
    batch_size: int,
    now: datetime,
    resend_of: str | None = None,
    cap: int | None = None,
) -> Snapshot:
    """Write the deliveries and batches of `broadcast`; returns what was fixed. A resend
    (`resend_of`) goes to the source's unreached recipients instead of the audience; `cap`
    (a recipient limit) takes at most that many, most recent interaction first."""
    now_us = to_us(now)
    since_us = None if since is None else to_us(since)
    source = _source(since_us, group, resend_of)
    params = {
        "m": merchant,
        "ch": channel,
        "since": since_us,
        "group": group,
        "b": broadcast,
        "source": resend_of,
    }
    blocked = int(FollowerState.BLOCKED)
    counted = _count(conn, source, params)
    reachable = f"{source} AND NOT c.opted_out AND c.follower_state <> {blocked}"
    if cap is None:
        recipients = conn.execute(
            bulk.statement(
                "INSERT INTO deliveries"
                " (broadcast_id, seq, contact_id, external_id, outcome, reason)"
                " SELECT :b, row_number() OVER (ORDER BY c.id) - 1, c.id, c.external_id, 0, ''"
                f" {reachable}"
            ),
            params,
        ).rowcount
        left_out = 0
    else:
        limited = int(DeliveryOutcome.NOT_SENT_LIMIT)
        written = conn.execute(
            bulk.statement(
                "INSERT INTO deliveries"
                " (broadcast_id, seq, contact_id, external_id, outcome, reason)"
                f" SELECT :b, r.n, r.id, r.external_id,"
                f" CASE WHEN r.n < :cap THEN 0 ELSE {limited} END, ''"
                " FROM (SELECT c.id, c.external_id, row_number() OVER"
                " (ORDER BY c.last_interaction_time DESC NULLS LAST, c.id) - 1 AS n"
                f" {reachable}) r"
            ),
            {**params, "cap": cap},
        ).rowcount
        recipients = min(written, cap)
        left_out = written - recipients
    count = _insert_batches(conn, [(broadcast, channel, recipients, batch_size)], now_us)[broadcast]
    return Snapshot(int(recipients), counted.opted_out, counted.unreachable, count, left_out)


def _insert_batches(
    conn: Connection, fixed: Sequence[tuple[str, str, int, int]], now_us: int
) -> dict[str, int]:
    """The batches of each (broadcast, channel, recipients, batch size), in one statement; how
    many each broadcast has."""
    rows: list[list[object]] = []
    counts: dict[str, int] = {}
    for broadcast, channel, recipients, size in fixed:
        counts[broadcast] = count = -(-recipients // size)
        rows.extend(
            [broadcast, channel, n, str(uuid.uuid4()), n * size, min(size, recipients - n * size)]
            for n in range(count)
        )
    if rows:
        c = [bulk.json_text(conn, i) for i in range(6)]
        conn.execute(
            bulk.statement(
                "INSERT INTO batches (broadcast_id, batch, channel_id, idempotency_key, first_seq,"
                " size, state, attempts, due_time, first_attempt_time, lease_owner, lease_expiry)"
                f" SELECT {c[0]}, CAST({c[2]} AS INTEGER), {c[1]}, {c[3]},"
                f" CAST({c[4]} AS BIGINT), CAST({c[5]} AS INTEGER), 0, 0, :now, NULL, '', 0"
                f" FROM {bulk.json_table(conn, 'rows')}"
            ),
            {"now": now_us, "rows": bulk.json_param(rows)},
        )
    return counts


# Many broadcasts at once: scheduled broadcasts due at the same moment start together, a few
# statements for all of them instead of a few each.


@dataclass(frozen=True, slots=True)
class Target:
    """One broadcast whose recipients `take_many` fixes: its audience (or, for a resend, the
    source broadcast whose unreached recipients it goes to) and how it is batched."""

    broadcast: str
    merchant: str
    channel: str
    since: datetime | None
    group: str | None
    batch_size: int
    resend_of: str | None = None
    cap: int | None = None  # a recipient limit, resolved: at most this many

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which criteria its statement joins on: targets of one shape share a statement."""
        if self.resend_of is not None:
            return (False, False, True)
        return (self.since is not None, self.group is not None, False)


def _targets(conn: Connection, targets: Sequence[Target]) -> tuple[str, str]:
    """(SQL for the targets as a table `s` (b, m, ch, since, grp, src, cap), its parameter)."""
    c = [bulk.json_text(conn, i) for i in range(7)]
    table = (
        f"(SELECT {c[0]} AS b, {c[1]} AS m, {c[2]} AS ch, CAST({c[3]} AS BIGINT) AS since,"
        f" {c[4]} AS grp, {c[5]} AS src, CAST({c[6]} AS BIGINT) AS cap"
        f" FROM {bulk.json_table(conn, 'targets')}) s"
    )
    rows = [
        [
            t.broadcast,
            t.merchant,
            t.channel,
            None if t.since is None else to_us(t.since),
            t.group,
            t.resend_of,
            t.cap,
        ]
        for t in targets
    ]
    return table, bulk.json_param(rows)


def _targets_source(table: str, shape: tuple[bool, bool, bool]) -> str:
    """FROM … of each target's audience contacts (`c`), joined to the target (`s`): `_source`
    for many broadcasts. One statement per shape keeps every join condition plain, so each can
    use its index (an `OR` per criterion would read the channel's every contact)."""
    since, group, resend = shape
    if resend:
        unreached = ", ".join(str(int(o)) for o in UNREACHED)
        return (
            f"FROM {table} JOIN deliveries d ON d.broadcast_id = s.src"
            f" AND d.outcome IN ({unreached}) AND d.outcome <> 0"
            " JOIN contacts c ON c.id = d.contact_id AND c.merchant_id = s.m"
            " AND c.channel_id = s.ch"
        )
    on = "c.merchant_id = s.m AND c.channel_id = s.ch"
    if since:
        on += " AND c.last_interaction_time >= s.since"
    if group:
        on += (
            " AND c.customer_id IN"
            " (SELECT g.customer_id FROM customer_group_members g WHERE g.group_id = s.grp)"
        )
    return f"FROM {table} JOIN contacts c ON {on}"


def _by_shape(targets: Sequence[Target]) -> dict[tuple[bool, bool, bool], list[Target]]:
    shapes: dict[tuple[bool, bool, bool], list[Target]] = {}
    for t in targets:
        shapes.setdefault(t.shape, []).append(t)
    return shapes


def count_many(conn: Connection, targets: Sequence[Target]) -> dict[str, Counts]:
    """Each target's audience counted as `take_many` will see it: matched, opted out,
    unreachable; one statement per shape of target."""
    blocked = int(FollowerState.BLOCKED)
    counted = {t.broadcast: Counts(0, 0, 0) for t in targets}
    for shape, some in _by_shape(targets).items():
        table, param = _targets(conn, some)
        found = conn.execute(
            bulk.statement(
                "SELECT s.b, COUNT(*), COALESCE(SUM(CASE WHEN c.opted_out THEN 1 ELSE 0 END), 0),"
                f" COALESCE(SUM(CASE WHEN NOT c.opted_out AND c.follower_state = {blocked}"
                f" THEN 1 ELSE 0 END), 0) {_targets_source(table, shape)} GROUP BY s.b"
            ),
            {"targets": param},
        )
        for b, matched, opted_out, unreachable in found:
            counted[b] = Counts(int(matched), int(opted_out), int(unreachable))
    return counted


def _sent_to(written: tuple[int, int]) -> int:
    """Recipients of a broadcast's deliveries written (all, left out by its limit)."""
    return written[0] - written[1]


def take_many(
    conn: Connection, targets: Sequence[Target], counted: Mapping[str, Counts], now: datetime
) -> dict[str, Snapshot]:
    """`take` for many broadcasts: the deliveries of every target in one statement per shape
    (numbered per broadcast as `take` numbers them), then all their batches in one. `counted`:
    their counts from `count_many`, in this transaction."""
    blocked = int(FollowerState.BLOCKED)
    limited = int(DeliveryOutcome.NOT_SENT_LIMIT)
    for (since, group, resend), some in _by_shape(targets).items():
        for capped in (False, True):
            chosen = [t for t in some if (t.cap is not None) == capped]
            if not chosen:
                continue
            table, param = _targets(conn, chosen)
            source = _targets_source(table, (since, group, resend))
            reachable = f"{source} WHERE NOT c.opted_out AND c.follower_state <> {blocked}"
            if not capped:
                select = (
                    "SELECT s.b, row_number() OVER (PARTITION BY s.b ORDER BY c.id) - 1, c.id,"
                    f" c.external_id, 0, '' {reachable}"
                )
            else:
                select = (
                    f"SELECT r.b, r.n, r.id, r.external_id,"
                    f" CASE WHEN r.n < r.cap THEN 0 ELSE {limited} END, ''"
                    " FROM (SELECT s.b, s.cap, c.id, c.external_id, row_number() OVER"
                    " (PARTITION BY s.b ORDER BY c.last_interaction_time DESC NULLS LAST, c.id)"
                    f" - 1 AS n {reachable}) r"
                )
            conn.execute(
                bulk.statement(
                    "INSERT INTO deliveries"
                    f" (broadcast_id, seq, contact_id, external_id, outcome, reason) {select}"
                ),
                {"targets": param},
            )
    # What each broadcast was given: read back, as contacts may have changed since the counts.
    written = dict.fromkeys((t.broadcast for t in targets), (0, 0))
    ids = [t.broadcast for t in targets]
    if ids:
        found = conn.execute(
            bulk.statement(
                "SELECT broadcast_id, COUNT(*),"
                f" COALESCE(SUM(CASE WHEN outcome = {limited} THEN 1 ELSE 0 END), 0)"
                f" FROM deliveries WHERE {bulk.in_strings(conn, 'broadcast_id', 'ids')}"
                " GROUP BY broadcast_id"
            ),
            {"ids": bulk.strings_param(conn, ids)},
        )
        written.update({b: (int(n), int(out)) for b, n, out in found})
    sizes = [
        (t.broadcast, t.channel, _sent_to(written[t.broadcast]), t.batch_size) for t in targets
    ]
    batches = _insert_batches(conn, sizes, to_us(now))
    fixed: dict[str, Snapshot] = {}
    for t in targets:
        n, left_out = written[t.broadcast]
        c = counted.get(t.broadcast, Counts(0, 0, 0))
        fixed[t.broadcast] = Snapshot(
            n - left_out, c.opted_out, c.unreachable, batches[t.broadcast], left_out
        )
    return fixed
