"""The work a dispatcher looks for: channels with open batches, and who holds each one's dispatch
lease, so that a process neither tries for a lease another holds (a write that cannot succeed)
nor polls to learn when it lapses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from broadcaster.store.clock import from_us
from broadcaster.store.dispatch import OPEN


@dataclass(frozen=True, slots=True)
class OpenChannel:
    channel: str
    lease_expiry: datetime | None  # of its dispatch lease, whoever holds it; None: no lease


def open_channels(conn: Connection) -> list[OpenChannel]:
    """Channels with open batches, each with its dispatch lease's expiry."""
    rows = conn.execute(
        text(
            "SELECT w.channel_id, l.expiry FROM"
            " (SELECT DISTINCT channel_id FROM batches WHERE state = :open) w"
            " LEFT JOIN channel_leases l ON l.channel_id = w.channel_id"
        ),
        {"open": OPEN},
    )
    return [OpenChannel(str(c), None if e is None else from_us(int(e))) for c, e in rows]
