"""Connected channel accounts and their sealed credentials."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, insert, select, text, update

from broadcaster.domain.model import AccountTier, ChannelAccount, ChannelState
from broadcaster.domain.paging import Page
from broadcaster.domain.reasons import Reason
from broadcaster.store import channel_credentials, syncs
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.tables import channels as t
from broadcaster.store.upkeep import upkeep_of

_LIVE = t.c.delete_time.is_(None)


def _channel(
    row: Row[tuple[object, ...]], conn: Connection | None = None, *, issued: bool = True
) -> ChannelAccount:
    """`issued`: read the status of the credential the channel issued for itself, if any."""
    m = row._mapping
    return ChannelAccount(
        merchant=m["merchant_id"],
        id=m["id"],
        type=m["type"],
        state=ChannelState(m["state"]),
        tier=AccountTier(m["tier"]),
        account_id=m["account_id"],
        display_name=m["display_name"],
        handle=m["handle"],
        picture_uri=m["picture_uri"],
        create_time=from_us(m["create_time"]),
        update_time=from_us(m["update_time"]),
        last_sync=None if conn is None else syncs.latest(conn, m["id"]),
        upkeep=upkeep_of(m),
        issued_credential=(
            channel_credentials.status(conn, m["id"]) if conn is not None and issued else None
        ),
    )


def create(
    conn: Connection,
    merchant: str,
    channel_id: str,
    channel_type: str,
    account: tuple[AccountTier, str, str, str, str],
    sealed: str,
    now: datetime,
    *,
    issued: bool = False,
) -> ChannelAccount:
    """`issued`: the channel issues its own credential, stored before (channel_credentials)."""
    now_us = to_us(now)
    tier, account_id, display_name, handle, picture_uri = account
    conn.execute(
        insert(t).values(
            id=channel_id,
            merchant_id=merchant,
            type=channel_type,
            state=int(ChannelState.CONNECTED),
            tier=int(tier),
            account_id=account_id,
            display_name=display_name,
            handle=handle,
            picture_uri=picture_uri,
            sealed_credentials=sealed,
            create_time=now_us,
            update_time=now_us,
        )
    )
    return ChannelAccount(
        merchant=merchant,
        id=channel_id,
        type=channel_type,
        state=ChannelState.CONNECTED,
        tier=tier,
        account_id=account_id,
        display_name=display_name,
        handle=handle,
        picture_uri=picture_uri,
        create_time=from_us(now_us),
        update_time=from_us(now_us),
        issued_credential=channel_credentials.status(conn, channel_id) if issued else None,
    )


def find_live_account(
    conn: Connection, merchant: str, channel_type: str, account_id: str
) -> ChannelAccount | None:
    row = conn.execute(
        select(t).where(
            t.c.merchant_id == merchant,
            t.c.type == channel_type,
            t.c.account_id == account_id,
            _LIVE,
        )
    ).first()
    return None if row is None else _channel(row, conn)


def get(conn: Connection, merchant: str, channel_id: str) -> ChannelAccount | None:
    row = conn.execute(
        select(t).where(t.c.merchant_id == merchant, t.c.id == channel_id, _LIVE)
    ).first()
    return None if row is None else _channel(row, conn)


def get_any_merchant(conn: Connection, channel_id: str) -> tuple[ChannelAccount, str] | None:
    """A live channel and its sealed credentials by id alone (webhooks carry no merchant)."""
    row = conn.execute(select(t).where(t.c.id == channel_id, _LIVE)).first()
    if row is None or row._mapping["sealed_credentials"] is None:
        return None
    return _channel(row), row._mapping["sealed_credentials"]


def list_page(
    conn: Connection, merchant: str, page: Page, *, needs_attention: bool = False
) -> list[ChannelAccount]:
    """Newest first; with `needs_attention`, only channels with an issue (a partial index)."""
    query = select(t).where(t.c.merchant_id == merchant, _LIVE)
    if needs_attention:
        query = query.where(t.c.issues != 0)
    if page.after is not None:
        query = query.where(t.c.id < page.after)
    rows = conn.execute(query.order_by(t.c.id.desc()).limit(page.size + 1)).all()
    return [_channel(r, conn) for r in rows]


def set_tier_and_state(
    conn: Connection, channel_id: str, tier: AccountTier | None, state: ChannelState, now: datetime
) -> None:
    now_us = to_us(now)
    values: dict[str, int] = {"state": int(state), "update_time": now_us}
    if tier is not None:
        values["tier"] = int(tier)
    conn.execute(update(t).where(t.c.id == channel_id, _LIVE).values(**values))


def mark_credentials_invalid(conn: Connection, channel_id: str, now: datetime) -> bool:
    """The channel refused the credentials: True if this turned a connected channel invalid."""
    done = conn.execute(
        update(t)
        .where(t.c.id == channel_id, _LIVE, t.c.state == int(ChannelState.CONNECTED))
        .values(state=int(ChannelState.CREDENTIALS_INVALID), update_time=to_us(now))
    )
    return done.rowcount == 1


def disconnect(conn: Connection, merchant: str, channel_id: str, now: datetime) -> bool:
    """Destroy the credentials and mark the channel deleted. Its contacts are forgotten after,
    a few hundred at a time (`forget_contacts`): deleting a million in this transaction held
    SQLite's one writer for 16.7 s, and every merchant's sending waited on it. Its webhook ids
    are forgotten with everyone's, past the dedupe window (store.webhook_events.prune)."""
    now_us = to_us(now)
    done = conn.execute(
        update(t)
        .where(t.c.merchant_id == merchant, t.c.id == channel_id, _LIVE)
        .values(
            sealed_credentials=None, delete_time=now_us, update_time=now_us, next_sync_time=None
        )
    )
    if done.rowcount == 0:
        return False
    syncs.stop_running(
        conn, channel_id, Reason.CHANNEL_DISCONNECTED, "the channel was disconnected", now
    )
    return True


def exists(conn: Connection, merchant: str, channel_id: str) -> bool:
    return (
        conn.execute(
            select(t.c.id).where(t.c.merchant_id == merchant, t.c.id == channel_id, _LIVE)
        ).first()
        is not None
    )


def forget_contacts(conn: Connection, most: int) -> int:
    """Delete up to `most` contacts of one deleted channel, in one statement; how many (0: no
    deleted channel has any left that another transaction is not deleting). A channel's
    audience counts go once its contacts are gone (two replicas deleting its last contacts at
    once may each still see the other's: the next look clears them).

    Rows another transaction is deleting are skipped (PostgreSQL), so every replica may forget
    at the same time without waiting on the others."""
    found = conn.execute(
        text(
            "SELECT ch.merchant_id, ch.id FROM channels ch WHERE ch.delete_time IS NOT NULL"
            " AND (EXISTS (SELECT 1 FROM contacts c"
            " WHERE c.merchant_id = ch.merchant_id AND c.channel_id = ch.id)"
            " OR EXISTS (SELECT 1 FROM audience_counts a WHERE a.channel_id = ch.id)) LIMIT 1"
        )
    ).first()
    if found is None:
        return 0
    merchant, channel_id = found
    skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    done = conn.execute(
        text(
            "DELETE FROM contacts WHERE id IN (SELECT id FROM contacts"
            f" WHERE merchant_id = :m AND channel_id = :ch LIMIT :most{skip_locked})"
        ),
        {"m": merchant, "ch": channel_id, "most": most},
    )
    if done.rowcount < most:
        conn.execute(
            text(
                "DELETE FROM audience_counts WHERE channel_id = :ch AND NOT EXISTS"
                " (SELECT 1 FROM contacts WHERE merchant_id = :m AND channel_id = :ch)"
            ),
            {"m": merchant, "ch": channel_id},
        )
    return done.rowcount
