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

import functools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, TextClause, text

from broadcaster.domain.deliveries import UNREACHED, DeliveryOutcome
from broadcaster.domain.model import FollowerState
from broadcaster.store import bulk
from broadcaster.store.audience import Counts
from broadcaster.store.clock import to_us


@functools.lru_cache(maxsize=64)
def _sql(statement: str) -> TextClause:
    """`text(statement)`, parsed once: a Send's statements take a handful of shapes, and many
    scheduled broadcasts firing together snapshot one after another."""
    return text(statement)


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
        _sql(
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
            _sql(
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
            _sql(
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
    count = -(-recipients // batch_size)
    rows = [
        [n, str(uuid.uuid4()), n * batch_size, min(batch_size, recipients - n * batch_size)]
        for n in range(count)
    ]
    if rows:
        c = [bulk.json_text(conn, i) for i in range(4)]
        conn.execute(
            _sql(
                "INSERT INTO batches (broadcast_id, batch, channel_id, idempotency_key, first_seq,"
                " size, state, attempts, due_time, first_attempt_time, lease_owner, lease_expiry)"
                f" SELECT :b, CAST({c[0]} AS INTEGER), :ch, {c[1]}, CAST({c[2]} AS BIGINT),"
                f" CAST({c[3]} AS INTEGER), 0, 0, :now, NULL, '', 0"
                f" FROM {bulk.json_table(conn, 'rows')}"
            ),
            {"b": broadcast, "ch": channel, "now": now_us, "rows": json.dumps(rows)},
        )
    return Snapshot(int(recipients), counted.opted_out, counted.unreachable, count, left_out)
