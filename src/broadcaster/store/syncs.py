"""Contact sync runs: start one per channel, lease it, commit pages with their cursor, finish."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, ScalarSelect, Select, insert, or_, select, update

from broadcaster.domain.model import ContactSyncRun, SyncState
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.tables import contact_syncs as t


def _run(row: Row[tuple[object, ...]]) -> ContactSyncRun:
    m = row._mapping
    return ContactSyncRun(
        id=m["id"],
        channel=m["channel_id"],
        state=SyncState(m["state"]),
        phase=m["phase"],
        cursor=m["cursor"],
        profile_cursor=m["profile_cursor"],
        contacts_synced=m["contacts_synced"],
        contacts_created=m["contacts_created"],
        contacts_unfollowed=m["contacts_unfollowed"],
        profiles_fetched=m["profiles_fetched"],
        error_reason=m["error_reason"],
        message=m["message"],
        start_time=from_us(m["start_time"]),
        end_time=maybe_from_us(m["end_time"]),
    )


def _latest(channel_id: str, *columns: Any) -> Select[Any]:
    """`columns` of the channel's latest sync."""
    return select(*columns).where(t.c.channel_id == channel_id).order_by(t.c.id.desc()).limit(1)


def latest(conn: Connection, channel_id: str) -> ContactSyncRun | None:
    row = conn.execute(_latest(channel_id, t)).first()
    return None if row is None else _run(row)


def latest_state(channel_id: str) -> ScalarSelect[int]:
    """The state of the channel's latest sync (`latest`'s), as a subquery: NULL when none."""
    return _latest(channel_id, t.c.state).scalar_subquery()


def get(conn: Connection, run_id: int) -> ContactSyncRun | None:
    row = conn.execute(select(t).where(t.c.id == run_id)).first()
    return None if row is None else _run(row)


def start(
    conn: Connection, channel_id: str, owner: str, lease_until: datetime, now: datetime
) -> ContactSyncRun:
    """A new running sync, leased to `owner`. The partial unique index allows one running sync
    per channel; a second start raises IntegrityError, and the caller reports the running one."""
    now_us = to_us(now)
    lease_us = to_us(lease_until)
    run_id = conn.execute(
        insert(t)
        .values(
            channel_id=channel_id,
            state=int(SyncState.RUNNING),
            phase=1,
            contacts_synced=0,
            contacts_created=0,
            contacts_unfollowed=0,
            profiles_fetched=0,
            error_reason="",
            message="",
            lease_owner=owner,
            lease_expiry=lease_us,
            start_time=now_us,
        )
        .returning(t.c.id)
    ).scalar_one()
    found = get(conn, run_id)
    assert found is not None
    return found


def claim_orphans(conn: Connection, owner: str, lease_until: datetime, now: datetime) -> list[int]:
    """Take over running syncs whose lease expired (their process died); returns their ids."""
    now_us = to_us(now)
    lease_us = to_us(lease_until)
    query = select(t.c.id).where(t.c.state == int(SyncState.RUNNING), t.c.lease_expiry < now_us)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = [int(i) for i in conn.execute(query).scalars()]
    if ids:
        conn.execute(
            update(t).where(t.c.id.in_(ids)).values(lease_owner=owner, lease_expiry=lease_us)
        )
    return ids


def renew(conn: Connection, run_id: int, owner: str, lease_until: datetime) -> bool:
    """Extend the lease; False if another process took the run over (or it ended)."""
    lease_us = to_us(lease_until)
    done = conn.execute(
        update(t)
        .where(t.c.id == run_id, t.c.lease_owner == owner, t.c.state == int(SyncState.RUNNING))
        .values(lease_expiry=lease_us)
    )
    return done.rowcount == 1


def record_page(
    conn: Connection,
    run_id: int,
    *,
    cursor: str | None,
    synced: int,
    created: int,
    phase: int = 1,
) -> None:
    conn.execute(
        update(t)
        .where(t.c.id == run_id)
        .values(
            cursor=cursor,
            phase=phase,
            contacts_synced=t.c.contacts_synced + synced,
            contacts_created=t.c.contacts_created + created,
        )
    )


def record_profiles(conn: Connection, run_id: int, profile_cursor: str, fetched: int) -> None:
    conn.execute(
        update(t)
        .where(t.c.id == run_id)
        .values(profile_cursor=profile_cursor, profiles_fetched=t.c.profiles_fetched + fetched)
    )


def finish_listing(conn: Connection, run_id: int, unfollowed: int) -> None:
    conn.execute(update(t).where(t.c.id == run_id).values(contacts_unfollowed=unfollowed))


def succeed(conn: Connection, run_id: int, now: datetime) -> None:
    finish(conn, run_id, SyncState.SUCCEEDED, now)


def finish(
    conn: Connection,
    run_id: int,
    state: SyncState,
    now: datetime,
    *,
    reason: str = "",
    message: str = "",
) -> None:
    now_us = to_us(now)
    conn.execute(
        update(t)
        .where(t.c.id == run_id, t.c.state == int(SyncState.RUNNING))
        .values(
            state=int(state),
            end_time=now_us,
            error_reason=reason,
            message=message[:1024],
            lease_owner="",
        )
    )


def stop_running(
    conn: Connection, channel_id: str, reason: str, message: str, now: datetime
) -> None:
    now_us = to_us(now)
    conn.execute(
        update(t)
        .where(t.c.channel_id == channel_id, or_(t.c.state == int(SyncState.RUNNING)))
        .values(state=int(SyncState.FAILED), end_time=now_us, error_reason=reason, message=message)
    )
