"""Credentials channels issue for themselves (LINE: short-lived channel access tokens): the
current one per channel, sealed, and the renewal lease that lets one replica renew it.

Renewing is a compare-and-set: `take_renewal` succeeds only for the version the caller read and
while no other replica holds an unexpired renewal lease; `store_renewed` only for the lease's
holder. A replica that loses reads what the winner stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from broadcaster.domain.model import ChannelState, IssuedCredentialStatus
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.tables import channel_credentials as t
from broadcaster.store.tables import channels


@dataclass(frozen=True, slots=True)
class StoredCredential:
    channel_id: str
    sealed: str
    status: IssuedCredentialStatus
    version: int
    lease_owner: str
    lease_expiry: datetime


@dataclass(frozen=True, slots=True)
class NewCredential:
    sealed: str
    issue_time: datetime
    renew_time: datetime
    expire_time: datetime


def _times(new: NewCredential) -> dict[str, int]:
    return {
        "issue_time": to_us(new.issue_time),
        "renew_time": to_us(new.renew_time),
        "expire_time": to_us(new.expire_time),
    }


def get(conn: Connection, channel_id: str) -> StoredCredential | None:
    row = conn.execute(select(t).where(t.c.channel_id == channel_id)).first()
    if row is None:
        return None
    m = row._mapping
    return StoredCredential(
        channel_id=m["channel_id"],
        sealed=m["sealed"],
        status=IssuedCredentialStatus(
            issue_time=from_us(m["issue_time"]),
            renew_time=from_us(m["renew_time"]),
            expire_time=from_us(m["expire_time"]),
        ),
        version=m["version"],
        lease_owner=m["lease_owner"],
        lease_expiry=from_us(m["lease_expiry"]),
    )


def status(conn: Connection, channel_id: str) -> IssuedCredentialStatus | None:
    row = conn.execute(
        select(t.c.issue_time, t.c.renew_time, t.c.expire_time).where(t.c.channel_id == channel_id)
    ).first()
    if row is None:
        return None
    return IssuedCredentialStatus(from_us(row[0]), from_us(row[1]), from_us(row[2]))


def create(conn: Connection, channel_id: str, new: NewCredential) -> None:
    """The first credential of a channel just connected."""
    conn.execute(
        insert(t).values(
            channel_id=channel_id,
            sealed=new.sealed,
            version=1,
            lease_owner="",
            lease_expiry=0,
            **_times(new),
        )
    )


def take_renewal(
    conn: Connection, channel_id: str, version: int, owner: str, until: datetime, now: datetime
) -> bool:
    """Take the renewal lease if the credential is still at `version` and nobody else holds an
    unexpired lease; False otherwise (another replica renewed, or is renewing)."""
    done = conn.execute(
        update(t)
        .where(
            t.c.channel_id == channel_id,
            t.c.version == version,
            t.c.lease_expiry <= to_us(now),
        )
        .values(lease_owner=owner, lease_expiry=to_us(until))
    )
    return done.rowcount == 1


def store_renewed(conn: Connection, channel_id: str, owner: str, new: NewCredential) -> bool:
    """Store the renewed credential and end the lease; False if `owner` no longer holds it."""
    done = conn.execute(
        update(t)
        .where(t.c.channel_id == channel_id, t.c.lease_owner == owner)
        .values(
            sealed=new.sealed,
            version=t.c.version + 1,
            lease_owner="",
            lease_expiry=0,
            **_times(new),
        )
    )
    return done.rowcount == 1


def release(conn: Connection, channel_id: str, owner: str) -> None:
    """Give the renewal lease up (renewing failed), so another try need not wait for it."""
    conn.execute(
        update(t)
        .where(t.c.channel_id == channel_id, t.c.lease_owner == owner)
        .values(lease_owner="", lease_expiry=0)
    )


def due(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Connected channels whose credential is due for renewal and that nobody is renewing."""
    now_us = to_us(now)
    rows = conn.execute(
        select(t.c.channel_id)
        .join(channels, channels.c.id == t.c.channel_id)
        .where(
            t.c.renew_time <= now_us,
            t.c.lease_expiry <= now_us,
            channels.c.delete_time.is_(None),
            channels.c.state == int(ChannelState.CONNECTED),
        )
        .order_by(t.c.renew_time)
        .limit(limit)
    ).all()
    return [r[0] for r in rows]


def forget(conn: Connection, channel_id: str) -> None:
    conn.execute(delete(t).where(t.c.channel_id == channel_id))
