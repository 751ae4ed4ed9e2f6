"""The work a dispatcher looks for, and the dispatchers it shares it with: channels with open
batches, who holds each one's dispatch lease (so that a process neither tries for a lease
another holds, a write that cannot succeed, nor polls to learn when it lapses), and the
dispatchers whose heartbeat is current."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from broadcaster.store.batch_recipients import IS_OPEN
from broadcaster.store.clock import from_us, to_us


@dataclass(frozen=True, slots=True)
class OpenChannel:
    channel: str
    lease_expiry: datetime | None  # of its dispatch lease, whoever holds it; None: no lease


@dataclass(frozen=True, slots=True)
class Work:
    channels: list[OpenChannel]
    dispatchers: int | None  # running (this one included); None: not read, no channels


def look(conn: Connection, now: datetime) -> Work:
    """Channels with open batches, each with its dispatch lease's expiry; and, if there are
    any, how many dispatchers share them."""
    rows = conn.execute(
        text(
            "SELECT w.channel_id, l.expiry FROM"
            f" (SELECT DISTINCT channel_id FROM batches WHERE {IS_OPEN}) w"
            " LEFT JOIN channel_leases l ON l.channel_id = w.channel_id"
        )
    )
    channels = [OpenChannel(str(c), None if e is None else from_us(int(e))) for c, e in rows]
    if not channels:
        return Work(channels, None)
    running = conn.execute(
        text("SELECT COUNT(*) FROM dispatchers WHERE expiry >= :now"), {"now": to_us(now)}
    ).scalar_one()
    return Work(channels, max(1, int(running)))


def heartbeat(conn: Connection, dispatcher: str, until: datetime, now: datetime) -> int:
    """Say the dispatcher runs until `until`, forget those whose heartbeat ran out, and return
    how many run now (this one included)."""
    params = {"d": dispatcher, "until": to_us(until), "now": to_us(now)}
    conn.execute(text("DELETE FROM dispatchers WHERE expiry < :now AND id <> :d"), params)
    conn.execute(
        text(
            "INSERT INTO dispatchers (id, expiry) VALUES (:d, :until)"
            " ON CONFLICT (id) DO UPDATE SET expiry = :until"
        ),
        params,
    )
    return int(conn.execute(text("SELECT COUNT(*) FROM dispatchers")).scalar_one())


def stop_heartbeat(conn: Connection, dispatcher: str) -> None:
    """The dispatcher stopped: the others share the channels without waiting for its expiry."""
    conn.execute(text("DELETE FROM dispatchers WHERE id = :d"), {"d": dispatcher})
