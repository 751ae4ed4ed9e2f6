"""A channel's upkeep: the durable due time of its next follower re-sync and the claim of the
replica starting it, what the service last saw of its follower list, webhook and quota, and its
health, with a lifecycle event when it turns unhealthy or recovers.

The re-sync's due time is `channels.next_sync_time`. A due channel is claimed for a short lease
(`sync_lease_expiry`) by one statement over the head of its index, as scheduled broadcasts are
(store.schedules): the claim spares other replicas the duplicate work. What keeps two syncs of
one channel from running at once is the contact sync's own unique index (store.syncs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, or_, select, text, update

from broadcaster.domain.deliveries import EventKind
from broadcaster.domain.health import HealthInputs, Issue, Upkeep, WebhookState, assess
from broadcaster.domain.model import ChannelState, SyncState
from broadcaster.store import channel_credentials, syncs
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.events import record_channel_event
from broadcaster.store.tables import channels as t

_LIVE = t.c.delete_time.is_(None)


def upkeep_of(m: RowMapping) -> Upkeep:
    """The upkeep columns of a channels row."""
    return Upkeep(
        next_sync_time=maybe_from_us(m["next_sync_time"]),
        followers_sync_time=maybe_from_us(m["followers_sync_time"]),
        webhook_state=WebhookState(m["webhook_state"]),
        webhook_endpoint=m["webhook_endpoint"],
        webhook_detail=m["webhook_detail"],
        webhook_test_time=maybe_from_us(m["webhook_test_time"]),
        last_event_time=maybe_from_us(m["last_event_time"]),
        quota_limit=m["quota_limit"],
        quota_used=m["quota_used"],
        quota_time=maybe_from_us(m["quota_time"]),
        issues=Issue(m["issues"]),
        unhealthy_since=maybe_from_us(m["unhealthy_since"]),
    )


def claim_due_syncs(
    conn: Connection, *, now: datetime, lease_until: datetime, limit: int
) -> list[str]:
    """Claim up to `limit` connected channels whose re-sync is due and that no replica is
    starting, until `lease_until`; their ids, the most overdue first."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    rows = conn.execute(
        text(
            "UPDATE channels SET sync_lease_expiry = :until WHERE id IN ("
            "SELECT id FROM channels WHERE delete_time IS NULL AND next_sync_time <= :now"
            f" AND sync_lease_expiry < :now ORDER BY next_sync_time LIMIT :limit{lock})"
            " AND delete_time IS NULL RETURNING id, next_sync_time"
        ),
        {"now": to_us(now), "until": to_us(lease_until), "limit": limit},
    ).all()
    return [str(r[0]) for r in sorted(rows, key=lambda r: (int(r[1]), str(r[0])))]


def next_sync_due(conn: Connection) -> datetime | None:
    """When a channel's re-sync is next to be claimed: the earliest due time not claimed, or
    the earliest claim that will lapse. None when no channel is connected."""
    row = conn.execute(
        text(
            "SELECT MIN(CASE WHEN sync_lease_expiry > next_sync_time THEN sync_lease_expiry"
            " ELSE next_sync_time END) FROM channels"
            " WHERE delete_time IS NULL AND next_sync_time IS NOT NULL"
        )
    ).scalar()
    return None if row is None else from_us(int(row))


def followers_state(conn: Connection, channel_id: str) -> tuple[datetime | None, bool]:
    """(when the follower list was last read whole, whether the account may list it: no sync
    was skipped for that reason last)."""
    # One statement (every estimate and Send asks): the channel's time and its latest sync's
    # state, each a subquery that may find nothing.
    read, state = conn.execute(
        select(
            select(t.c.followers_sync_time).where(t.c.id == channel_id).scalar_subquery(),
            syncs.latest_state(channel_id),
        )
    ).one()
    return maybe_from_us(read), state != SyncState.SKIPPED  # (no sync: NULL, listable)


def schedule_sync(conn: Connection, channel_id: str, at: datetime) -> None:
    """The next re-sync is due at `at`; any claim is released."""
    conn.execute(
        update(t)
        .where(t.c.id == channel_id, _LIVE)
        .values(next_sync_time=to_us(at), sync_lease_expiry=0)
    )


def followers_listed(conn: Connection, channel_id: str, now: datetime) -> None:
    """A sync has just read the whole follower list."""
    conn.execute(update(t).where(t.c.id == channel_id).values(followers_sync_time=to_us(now)))


def set_webhook(
    conn: Connection,
    channel_id: str,
    state: WebhookState,
    endpoint: str,
    detail: str,
    tested: datetime | None,
) -> None:
    values: dict[str, Any] = {
        "webhook_state": int(state),
        "webhook_endpoint": endpoint,
        "webhook_detail": detail[:1024],
    }
    if tested is not None:
        values["webhook_test_time"] = to_us(tested)
    conn.execute(update(t).where(t.c.id == channel_id, _LIVE).values(**values))


EVENT_TIME_STEP = timedelta(minutes=1)


def event_received(conn: Connection, channel_id: str, now: datetime) -> None:
    """The channel posted events that checked out. Kept to the minute: a busy channel's
    webhooks rewrite its row at most once a minute."""
    now_us = to_us(now)
    step = int(EVENT_TIME_STEP.total_seconds() * 1_000_000)
    conn.execute(
        update(t)
        .where(
            t.c.id == channel_id,
            _LIVE,
            or_(t.c.last_event_time.is_(None), t.c.last_event_time < now_us - step),
        )
        .values(last_event_time=now_us)
    )


def record_quota(
    conn: Connection, channel_id: str, limit: int | None, used: int, now: datetime
) -> None:
    conn.execute(
        update(t)
        .where(t.c.id == channel_id, _LIVE)
        .values(quota_limit=limit, quota_used=used, quota_time=to_us(now))
    )


@dataclass(frozen=True, slots=True)
class HealthChange:
    merchant: str
    channel_type: str
    before: Issue
    after: Issue


def refresh_health(
    conn: Connection, channel_id: str, now: datetime, stale_after: timedelta | None
) -> HealthChange | None:
    """Assess the channel's health from what is stored, keep it, and record a lifecycle event
    when it turns unhealthy (CHANNEL_UNHEALTHY) or healthy again (CHANNEL_HEALTHY). None for a
    channel not connected."""
    query = select(t).where(t.c.id == channel_id, _LIVE)
    if conn.dialect.name == "postgresql":  # two assessments at once: the second sees the first
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        return None
    m = row._mapping
    upkeep = upkeep_of(m)
    latest = syncs.latest(conn, channel_id)
    issued = channel_credentials.status(conn, channel_id)
    inputs = HealthInputs(
        credentials_refused=ChannelState(m["state"]) == ChannelState.CREDENTIALS_INVALID,
        upkeep=upkeep,
        sync_failed=latest is not None and latest.state == SyncState.FAILED,
        followers_listable=latest is None or latest.state != SyncState.SKIPPED,
        create_time=from_us(m["create_time"]),
        now=now,
        stale_after=stale_after,
        credentials_expiring=issued is not None and now >= issued.renew_time,
    )
    before, found = upkeep.issues, assess(inputs)
    change = HealthChange(str(m["merchant_id"]), str(m["type"]), before, found)
    if found == before:
        return change
    since = m["unhealthy_since"] if before and found else (to_us(now) if found else None)
    conn.execute(
        update(t).where(t.c.id == channel_id).values(issues=int(found), unhealthy_since=since)
    )
    if bool(found) != bool(before):
        kind = EventKind.CHANNEL_UNHEALTHY if found else EventKind.CHANNEL_HEALTHY
        first = next((i for i in Issue if i in found), None)
        reason = "" if first is None else str(first.name)
        record_channel_event(conn, change.merchant, channel_id, kind, reason, to_us(now))
    return change
