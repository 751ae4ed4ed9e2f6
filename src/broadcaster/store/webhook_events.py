"""Webhook event ids: which of a batch are new (the rest are redeliveries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, text

from broadcaster.store import bulk
from broadcaster.store.clock import to_us


def claim_new(conn: Connection, channel: str, event_ids: Sequence[str], now: datetime) -> set[str]:
    """Record the ids; returns those not recorded before, in one statement."""
    now_us = to_us(now)
    into, ignore = bulk.insert_ignore(conn)
    rows = conn.execute(
        text(
            f"{into} webhook_events (channel_id, event_id, receive_time) "
            f"SELECT DISTINCT :ch, {bulk.json_scalar_text(conn)}, :now "
            f"FROM {bulk.json_table(conn, 'ids')} WHERE true {ignore} RETURNING event_id"
        ),
        {"ch": channel, "now": now_us, "ids": bulk.json_param(list(event_ids))},
    )
    return {r[0] for r in rows}
