"""Contacts of a channel: bulk merge by external id, lookups, filtered pages, updates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, exists, select, text, update

from broadcaster.domain.ids import new_ids
from broadcaster.domain.model import (
    Contact,
    ContactChange,
    ContactFilter,
    ContactImport,
    FollowerState,
)
from broadcaster.domain.paging import Page
from broadcaster.store import bulk
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.tables import channels, conversations
from broadcaster.store.tables import contacts as t

# The merge rules documented on the API's Contact message, as one ON CONFLICT clause.
_MERGE = """
ON CONFLICT (merchant_id, channel_id, external_id) DO UPDATE SET
  display_name = CASE WHEN excluded.display_name <> ''
      AND excluded.observe_time >= contacts.observe_time
      THEN excluded.display_name ELSE contacts.display_name END,
  picture_uri = CASE WHEN excluded.picture_uri <> ''
      AND excluded.observe_time >= contacts.observe_time
      THEN excluded.picture_uri ELSE contacts.picture_uri END,
  customer_id = CASE WHEN excluded.customer_id IS NOT NULL
      AND excluded.observe_time >= contacts.observe_time
      THEN excluded.customer_id ELSE contacts.customer_id END,
  follower_state = CASE WHEN contacts.follower_state = 0
      THEN excluded.follower_state ELSE contacts.follower_state END,
  last_interaction_time = CASE
      WHEN contacts.last_interaction_time IS NULL THEN excluded.last_interaction_time
      WHEN excluded.last_interaction_time > contacts.last_interaction_time
      THEN excluded.last_interaction_time
      ELSE contacts.last_interaction_time END,
  opted_out = (contacts.opted_out OR excluded.opted_out),
  observe_time = CASE WHEN excluded.observe_time > contacts.observe_time
      THEN excluded.observe_time ELSE contacts.observe_time END,
  update_time = excluded.update_time
"""


# A contact has a conversation if it had one before (stored on the contact) or a broadcast
# created it (the narrow `conversations` table, see store.events).
_CONVERSED = exists().where(conversations.c.contact_id == t.c.id).label("conversed")
_SELECT = select(t, _CONVERSED)
# A deleted channel's contacts are forgotten in the background (store.channels.disconnect);
# until then they are no one's to read or change.
_LIVE_CHANNEL = exists().where(channels.c.id == t.c.channel_id, channels.c.delete_time.is_(None))


def _contact(row: Row[tuple[object, ...]]) -> Contact:
    m = row._mapping
    return Contact(
        merchant=m["merchant_id"],
        channel=m["channel_id"],
        id=m["id"],
        external_id=m["external_id"],
        display_name=m["display_name"],
        picture_uri=m["picture_uri"],
        follower_state=FollowerState(m["follower_state"]),
        last_interaction_time=maybe_from_us(m["last_interaction_time"]),
        opted_out=bool(m["opted_out"]),
        customer_id=m["customer_id"],
        has_conversation=bool(m["has_conversation"]) or bool(m.get("conversed")),
        observe_time=from_us(m["observe_time"]),
        create_time=from_us(m["create_time"]),
        update_time=from_us(m["update_time"]),
    )


def merge(
    conn: Connection, merchant: str, channel: str, items: list[ContactImport], now: datetime
) -> tuple[list[Contact], int]:
    """Create or merge the contacts in one statement; returns them in input order and the number
    created. External ids must be distinct within `items`."""
    now_us = to_us(now)
    rows: list[list[Any]] = [
        [
            new_id,
            i.external_id,
            i.display_name,
            i.picture_uri,
            int(i.follower_state),
            None if i.last_interaction_time is None else to_us(i.last_interaction_time),
            i.opted_out,
            i.customer_id,
            to_us(i.observe_time),
        ]
        # In external-id order, as every contact upsert: concurrent upserts of the same contacts
        # then lock them in the same order, so PostgreSQL never has to break a deadlock.
        for new_id, i in zip(
            new_ids(len(items)), sorted(items, key=lambda i: i.external_id), strict=True
        )
    ]
    col = [bulk.json_text(conn, n) for n in range(9)]
    stored = conn.execute(
        text(
            "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name,"
            " picture_uri, follower_state, last_interaction_time, opted_out, customer_id,"
            " has_conversation, observe_time, create_time, update_time) "
            f"SELECT {col[0]}, :merchant, :channel, {col[1]}, {col[2]}, {col[3]},"
            f" CAST({col[4]} AS SMALLINT), CAST({col[5]} AS BIGINT), CAST({col[6]} AS BOOLEAN),"
            f" {col[7]}, false, CAST({col[8]} AS BIGINT), :now, :now "
            f"FROM {bulk.json_table(conn, 'rows')} WHERE true {_MERGE} RETURNING *,"
            " EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id = contacts.id)"
            " AS conversed"
        ),
        {"merchant": merchant, "channel": channel, "now": now_us, "rows": bulk.json_param(rows)},
    ).all()
    by_id = {c.external_id: c for c in (_contact(r) for r in stored)}
    created = sum(1 for row in stored if row._mapping["create_time"] == now_us)
    return [by_id[i.external_id] for i in items], created


def get(conn: Connection, merchant: str, channel: str, contact_id: str) -> Contact | None:
    row = conn.execute(
        _SELECT.where(
            t.c.merchant_id == merchant,
            t.c.channel_id == channel,
            t.c.id == contact_id,
            _LIVE_CHANNEL,
        )
    ).first()
    return None if row is None else _contact(row)


def list_page(
    conn: Connection, merchant: str, channel: str, where: ContactFilter, page: Page
) -> list[Contact]:
    """In id (creation) order; `page.size + 1` rows so the caller knows if another page follows."""
    query = _SELECT.where(t.c.merchant_id == merchant, t.c.channel_id == channel)
    if where.opted_out is not None:
        query = query.where(t.c.opted_out == where.opted_out)
    if where.customer_id is not None:
        query = query.where(t.c.customer_id == where.customer_id)
    if where.last_interaction_after is not None:
        query = query.where(t.c.last_interaction_time >= to_us(where.last_interaction_after))
    if page.after is not None:
        query = query.where(t.c.id > page.after)
    rows = conn.execute(query.order_by(t.c.id).limit(page.size + 1))
    return [_contact(r) for r in rows]


def change(
    conn: Connection,
    merchant: str,
    channel: str,
    contact_id: str,
    edit: ContactChange,
    now: datetime,
) -> Contact | None:
    now_us = to_us(now)
    values: dict[str, Any] = {"update_time": now_us}
    if edit.opted_out is not None:
        values["opted_out"] = edit.opted_out
    if edit.clear_customer:
        values["customer_id"] = None
    elif edit.customer_id is not None:
        values["customer_id"] = edit.customer_id
    done = conn.execute(
        update(t)
        .where(
            t.c.merchant_id == merchant,
            t.c.channel_id == channel,
            t.c.id == contact_id,
            _LIVE_CHANNEL,
        )
        .values(**values)
    )
    if done.rowcount == 0:
        return None
    return get(conn, merchant, channel, contact_id)


def get_many(
    conn: Connection, merchant: str, channel: str, contact_ids: list[str]
) -> dict[str, Contact]:
    """The contacts of the channel among `contact_ids` (a few), by id; unknown ones left out."""
    rows = conn.execute(
        _SELECT.where(
            t.c.merchant_id == merchant, t.c.channel_id == channel, t.c.id.in_(contact_ids)
        )
    )
    return {c.id: c for c in (_contact(r) for r in rows)}
