"""The scheduled broadcasts' firing: which are due, and the lease of the replica firing them.

A due broadcast is claimed for a few seconds (`fire_lease_expiry`) by one statement over the
head of the due-time index; the claim only spares other replicas the duplicate work. What
makes a broadcast go out once is its change of state out of SCHEDULED, made under its row lock
(services.sending): a second firing finds it no longer scheduled and does nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, text

from broadcaster.domain import lifecycle
from broadcaster.domain.lifecycle import Transition
from broadcaster.store.clock import from_us, to_us

(_SCHEDULED,) = lifecycle.sources(Transition.FIRE)
# `state = 6` spelled as the partial index ix_broadcasts_due is, so both databases use it.
_IS_SCHEDULED = f"state = {int(_SCHEDULED)}"


@dataclass(frozen=True, slots=True)
class Due:
    merchant: str
    broadcast: str
    schedule_time: datetime


def claim_due(
    conn: Connection,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    skip_channels: Collection[str] = (),
) -> list[Due]:
    """Lease up to `limit` due scheduled broadcasts that no replica is firing, until
    `lease_until`; the earliest first. Those of `skip_channels` (channel ids this replica
    cannot open) are left to the others."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    skip = " AND channel_id NOT IN :skip" if skip_channels else ""
    # The due rows are chosen once, in a CTE: as a plain `IN (subquery)`, PostgreSQL may run a
    # locking subquery again for each row it updates, each time skipping the rows locked by the
    # runs before, and so claim every due broadcast whatever the limit.
    rows = conn.execute(
        text(
            f"WITH due AS (SELECT id FROM broadcasts WHERE {_IS_SCHEDULED}"
            f" AND schedule_time <= :now AND fire_lease_expiry < :now{skip}"
            f" ORDER BY schedule_time LIMIT :limit{lock})"
            " UPDATE broadcasts SET fire_lease_expiry = :until"
            f" WHERE id IN (SELECT id FROM due) AND {_IS_SCHEDULED}"
            " RETURNING merchant_id, id, schedule_time"
        ).bindparams(*([bindparam("skip", expanding=True)] if skip_channels else [])),
        {
            "now": to_us(now),
            "until": to_us(lease_until),
            "limit": limit,
            **({"skip": list(skip_channels)} if skip_channels else {}),
        },
    ).all()
    due = [Due(str(m), str(b), from_us(int(t))) for m, b, t in rows]
    return sorted(due, key=lambda d: (d.schedule_time, d.broadcast))


def release(conn: Connection, broadcast_ids: Collection[str]) -> None:
    """Give up this replica's claim on these broadcasts, so that another replica fires them now
    rather than when the claim would have lapsed."""
    if broadcast_ids:
        conn.execute(
            text(
                f"UPDATE broadcasts SET fire_lease_expiry = 0 WHERE id IN :ids AND {_IS_SCHEDULED}"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": list(broadcast_ids)},
        )


def next_due(
    conn: Connection, now: datetime, skip_channels: Collection[str] = ()
) -> datetime | None:
    """When a scheduled broadcast is next to be claimed: the earliest time of those never
    claimed, or the earliest lease expiry of those due and claimed (a replica firing them may
    have died, or their channel was unreachable). None when nothing is scheduled. Those of
    `skip_channels` are not looked at (see claim_due)."""
    skip = " AND channel_id NOT IN :skip" if skip_channels else ""
    row = conn.execute(
        text(
            "SELECT"
            f" (SELECT MIN(schedule_time) FROM broadcasts WHERE {_IS_SCHEDULED}"
            f" AND fire_lease_expiry <= schedule_time{skip}),"
            f" (SELECT MIN(fire_lease_expiry) FROM broadcasts WHERE {_IS_SCHEDULED}"
            f" AND schedule_time <= :now AND fire_lease_expiry > schedule_time{skip})"
        ).bindparams(*([bindparam("skip", expanding=True)] if skip_channels else [])),
        {"now": to_us(now), **({"skip": list(skip_channels)} if skip_channels else {})},
    ).one()
    times = [int(t) for t in row if t is not None]
    return from_us(min(times)) if times else None
