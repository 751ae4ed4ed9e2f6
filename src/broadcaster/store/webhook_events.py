"""Webhook event ids: which of a batch are new (the rest are redeliveries), and forgetting
them once the channel no longer redelivers."""

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


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Forget up to `limit` ids received before `before`, in one statement; returns how many.

    Rows another transaction is deleting are skipped (PostgreSQL), so every replica may prune
    at the same time without waiting on the others."""
    skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    done = conn.execute(
        text(
            "DELETE FROM webhook_events WHERE (channel_id, event_id) IN ("
            "SELECT channel_id, event_id FROM webhook_events WHERE receive_time < :before "
            f"LIMIT :limit{skip_locked})"
        ),
        {"before": to_us(before), "limit": limit},
    )
    return done.rowcount
