"""What channels tell us about contacts: follower-list pages of a sync, and webhook events.

The channel is the authority on follower state, but only for news newer than what is stored:
each contact keeps the time its state last changed (`state_time`), so a late or redelivered
event, or a follower list fetched before a newer unfollow, never moves it backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text, update

from broadcaster.domain.ids import new_ids
from broadcaster.domain.model import FollowerState
from broadcaster.store import bulk
from broadcaster.store.clock import to_us
from broadcaster.store.tables import contacts as t

_INSERT = (
    "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name, picture_uri,"
    " follower_state, state_time, last_interaction_time, opted_out, customer_id,"
    " has_conversation, observe_time, seen_sync, create_time, update_time) "
)


def _created(rows: Any, now: int) -> int:
    """How many upserted rows are new: RETURNING create_time, which only new rows have at `now`."""
    return sum(1 for (created,) in rows if created == now)


def record_followers(
    conn: Connection,
    merchant: str,
    channel: str,
    run_id: int,
    followers: Sequence[tuple[str, str, str]],
    now: datetime,
) -> int:
    """One page of the follower list, (external id, display name, picture) each: create the
    unknown ones, mark all as following and seen by this run. Returns how many were created."""
    now_us = to_us(now)
    # In external-id order, as every contact upsert (see contacts.merge).
    ordered = sorted(followers, key=lambda f: f[0])
    rows = [[cid, f[0], f[1], f[2]] for cid, f in zip(new_ids(len(ordered)), ordered, strict=True)]
    c = [bulk.json_text(conn, n) for n in range(4)]
    done = conn.execute(
        text(
            f"{_INSERT} SELECT {c[0]}, :m, :ch, {c[1]}, {c[2]}, {c[3]}, 1, :now, NULL, false,"
            f" NULL, false, :now, :run, :now, :now FROM {bulk.json_table(conn, 'rows')} WHERE true "
            "ON CONFLICT (merchant_id, channel_id, external_id) DO UPDATE SET"
            " follower_state = CASE WHEN contacts.state_time <= excluded.state_time"
            "   THEN 1 ELSE contacts.follower_state END,"
            " state_time = CASE WHEN contacts.state_time <= excluded.state_time"
            "   THEN excluded.state_time ELSE contacts.state_time END,"
            " display_name = CASE WHEN excluded.display_name <> '' THEN excluded.display_name"
            "   ELSE contacts.display_name END,"
            " picture_uri = CASE WHEN excluded.picture_uri <> '' THEN excluded.picture_uri"
            "   ELSE contacts.picture_uri END,"
            " seen_sync = excluded.seen_sync,"
            " update_time = excluded.update_time"
            " RETURNING create_time"
        ),
        {"m": merchant, "ch": channel, "now": now_us, "run": run_id, "rows": bulk.json_param(rows)},
    )
    return _created(done, now_us)


def mark_unlisted_blocked(
    conn: Connection, merchant: str, channel: str, run_id: int, sync_start: datetime, now: datetime
) -> int:
    """After a complete follower list: followers it did not list, whose state has not changed
    since the sync started, have unfollowed (or blocked) while we missed the webhook."""
    now_us = to_us(now)
    start_us = to_us(sync_start)
    done = conn.execute(
        update(t)
        .where(
            t.c.merchant_id == merchant,
            t.c.channel_id == channel,
            t.c.follower_state == int(FollowerState.FOLLOWING),
            (t.c.seen_sync.is_(None)) | (t.c.seen_sync != run_id),
            t.c.state_time < start_us,
        )
        .values(follower_state=int(FollowerState.BLOCKED), state_time=now_us, update_time=now_us)
    )
    return int(done.rowcount)


def missing_profiles(
    conn: Connection, merchant: str, channel: str, after: str | None, limit: int
) -> list[tuple[str, str]]:
    """(contact id, external id) of following contacts with no name yet, in id order."""
    query = select(t.c.id, t.c.external_id).where(
        t.c.merchant_id == merchant,
        t.c.channel_id == channel,
        t.c.follower_state == int(FollowerState.FOLLOWING),
        t.c.display_name == "",
    )
    if after is not None:
        query = query.where(t.c.id > after)
    return [(r[0], r[1]) for r in conn.execute(query.order_by(t.c.id).limit(limit))]


@dataclass(frozen=True, slots=True)
class ContactNews:
    """What a batch of events says about one contact."""

    external_id: str
    last_interaction: datetime | None  # newest interaction time
    follower_state: FollowerState  # UNKNOWN when the events say nothing about it
    state_time: datetime | None  # time of the event that set follower_state; None with UNKNOWN
    messaged: bool  # sent a message: the inbox has a conversation


def record_news(
    conn: Connection, merchant: str, channel: str, news: Sequence[ContactNews], now: datetime
) -> int:
    """Apply webhook news in one statement; returns how many contacts were new."""
    now_us = to_us(now)
    # In external-id order, as every contact upsert (see contacts.merge).
    ordered = sorted(news, key=lambda n: n.external_id)
    rows: list[list[Any]] = [
        [
            cid,
            n.external_id,
            int(n.follower_state),
            0 if n.state_time is None else to_us(n.state_time),
            None if n.last_interaction is None else to_us(n.last_interaction),
            n.messaged,
        ]
        for cid, n in zip(new_ids(len(ordered)), ordered, strict=True)
    ]
    c = [bulk.json_text(conn, i) for i in range(6)]
    done = conn.execute(
        text(
            f"{_INSERT} SELECT {c[0]}, :m, :ch, {c[1]}, '', '', CAST({c[2]} AS SMALLINT),"
            f" CAST({c[3]} AS BIGINT), CAST({c[4]} AS BIGINT), false, NULL,"
            f" CAST({c[5]} AS BOOLEAN), 0, NULL, :now, :now"
            f" FROM {bulk.json_table(conn, 'rows')} WHERE true "
            "ON CONFLICT (merchant_id, channel_id, external_id) DO UPDATE SET"
            " follower_state = CASE WHEN excluded.follower_state <> 0"
            "   AND excluded.state_time >= contacts.state_time"
            "   THEN excluded.follower_state ELSE contacts.follower_state END,"
            " state_time = CASE WHEN excluded.follower_state <> 0"
            "   AND excluded.state_time >= contacts.state_time"
            "   THEN excluded.state_time ELSE contacts.state_time END,"
            " last_interaction_time = CASE"
            "   WHEN contacts.last_interaction_time IS NULL THEN excluded.last_interaction_time"
            "   WHEN excluded.last_interaction_time > contacts.last_interaction_time"
            "   THEN excluded.last_interaction_time ELSE contacts.last_interaction_time END,"
            " has_conversation = (contacts.has_conversation OR excluded.has_conversation),"
            " update_time = excluded.update_time"
            " RETURNING create_time"
        ),
        {"m": merchant, "ch": channel, "now": now_us, "rows": bulk.json_param(rows)},
    )
    return _created(done, now_us)
