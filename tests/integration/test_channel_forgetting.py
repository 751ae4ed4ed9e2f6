"""A deleted channel's contacts: gone from reads at once, forgotten in the background a chunk at
a time (services.forgetting), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import Connection, text

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.errors import NotFound
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ContactFilter, ContactImport, FollowerState
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.forgetting import ForgetSettings, Forgetting
from broadcaster.store import channels
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database

EPOCH = from_us(0)
CONTACTS = 1_000


def _item(n: int) -> ContactImport:
    return ContactImport(
        external_id=f"U{n:06d}",
        display_name=f"Customer {n}",
        picture_uri="",
        follower_state=FollowerState.FOLLOWING,
        last_interaction_time=from_us(1_700_000_000_000_000 + n * 86_400_000_000),
        opted_out=n % 10 == 0,
        customer_id=f"cust-{n}",
        observe_time=EPOCH,
    )


async def _channel(db: Database, merchant: str) -> str:
    channel_id = new_id()
    account = (AccountTier.VERIFIED, f"acct-{channel_id}", "Shop", "@shop", "")
    await db.write(channels.create, merchant, channel_id, "fake", account, "sealed", from_us(1))
    return f"merchants/{merchant}/channels/{channel_id}"


async def _stored(db: Database, channel: str) -> dict[str, int]:
    """Rows the channel still has in each table that holds its contacts or counts them."""
    channel_id = channel.rsplit("/", 1)[1]

    def read(conn: Connection) -> dict[str, int]:
        return {
            table: conn.execute(
                text(f"SELECT COUNT(*) FROM {table} WHERE channel_id = :ch"), {"ch": channel_id}
            ).scalar_one()
            for table in ("contacts", "group_contacts", "audience_counts")
        }

    return await db.read(read)


@pytest.fixture
async def shop(ctx: ServiceContext, merchant: str) -> tuple[str, str]:
    """Two channels of one merchant, each with CONTACTS contacts in one customer group."""
    made = (await _channel(ctx.db, merchant), await _channel(ctx.db, merchant))
    contacts = Contacts(ctx)
    for parent in made:
        await contacts.batch_create(LOCAL, parent, [_item(n) for n in range(CONTACTS)])
    groups = CustomerGroups(ctx)
    group = await groups.create(LOCAL, f"merchants/{merchant}", "All", "", "")
    name = f"merchants/{merchant}/customerGroups/{group.id}"
    await groups.add_members(LOCAL, name, [f"cust-{n}" for n in range(CONTACTS)])
    return made


async def test_deleted_channels_contacts_are_unreadable_at_once_and_forgotten_after(
    ctx: ServiceContext, hub: ChannelHub, shop: tuple[str, str]
) -> None:
    deleted, kept = shop
    contacts = Contacts(ctx)
    (one,), _ = await contacts.batch_create(LOCAL, deleted, [_item(1)])
    woken: list[None] = []
    await Channels(ctx, hub, deleted=lambda: woken.append(None)).delete(LOCAL, deleted)
    assert woken == [None]

    # The delete left the rows to the background, and nothing reads them meanwhile.
    assert (await _stored(ctx.db, deleted))["contacts"] == CONTACTS
    with pytest.raises(NotFound):
        await contacts.get(LOCAL, f"{deleted}/contacts/{one.id}")
    with pytest.raises(NotFound):
        await contacts.update(LOCAL, f"{deleted}/contacts/{one.id}", ["opted_out"], True, "")
    with pytest.raises(NotFound):
        await contacts.list_page(LOCAL, deleted, 10, "", ContactFilter())

    forgetting = Forgetting(ctx, ForgetSettings(rows=70))
    assert await forgetting.forget_all() == CONTACTS
    assert await _stored(ctx.db, deleted) == {
        "contacts": 0,
        "group_contacts": 0,
        "audience_counts": 0,
    }
    # The merchant's other channel is untouched, its group's members there too.
    left = await _stored(ctx.db, kept)
    assert left["contacts"] == CONTACTS and left["group_contacts"] == CONTACTS
    assert left["audience_counts"] > 0
    assert await forgetting.forget_all() == 0

    # Counts left behind (two replicas deleting the last contacts at once) go on the next look.
    channel_id = deleted.rsplit("/", 1)[1]

    def leave_counts(conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO audience_counts (channel_id, group_id, day, contacts, opted_out,"
                " blocked) VALUES (:ch, '', 1, 0, 0, 0)"
            ),
            {"ch": channel_id},
        )

    await ctx.db.write(leave_counts)
    assert (await _stored(ctx.db, deleted))["audience_counts"] == 1
    assert await forgetting.forget_all() == 0
    assert (await _stored(ctx.db, deleted))["audience_counts"] == 0


async def test_the_background_loop_forgets_when_woken(
    ctx: ServiceContext, hub: ChannelHub, shop: tuple[str, str]
) -> None:
    deleted, _ = shop
    forgetting = Forgetting(ctx, ForgetSettings(rows=300, every=3600))
    forgetting.start()
    try:
        await asyncio.sleep(0.05)  # the loop's first look found nothing and sleeps an hour
        await Channels(ctx, hub, deleted=forgetting.wake).delete(LOCAL, deleted)
        async with asyncio.timeout(20):
            while True:
                if not (await _stored(ctx.db, deleted))["contacts"]:
                    break
                await asyncio.sleep(0.05)
    finally:
        await forgetting.stop()
    assert (await _stored(ctx.db, deleted))["audience_counts"] == 0


async def test_replicas_forget_side_by_side(
    ctx: ServiceContext, hub: ChannelHub, shop: tuple[str, str]
) -> None:
    deleted, kept = shop
    await Channels(ctx, hub).delete(LOCAL, deleted)
    replicas = [Forgetting(replace(ctx), ForgetSettings(rows=50)) for _ in range(3)]
    forgotten = await asyncio.gather(*(r.forget_all() for r in replicas))
    assert sum(forgotten) == CONTACTS  # each contact deleted once, by one of them
    assert (await _stored(ctx.db, deleted))["contacts"] == 0
    assert (await _stored(ctx.db, kept))["contacts"] == CONTACTS
