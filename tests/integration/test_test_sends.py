"""Test sends with the core alone (the fake channel), on SQLite and PostgreSQL: only the named
contacts receive, the broadcast is left as it was, each contact's outcome is recorded and
listed newest first, the quota is counted and enforced, and bad requests name the contact."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, text

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL, Caller
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.deliveries import START
from broadcaster.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.model import Contact, ContactChange, ContactImport, FollowerState
from broadcaster.domain.test_sends import TestOutcome
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.test_sends import TestSends
from broadcaster.store import contacts, events
from broadcaster.store.clock import from_us
from tests.fakechannel import LEDGERS, Ledger


@dataclass
class Shop:
    ctx: ServiceContext
    broadcasts: Broadcasts
    tests: TestSends
    merchant: str
    parent: str
    channel: str  # resource name
    channel_id: str
    ledger: Ledger
    people: list[Contact]

    def contact(self, n: int) -> str:
        return f"{self.channel}/contacts/{self.people[n].id}"

    async def draft(self) -> str:
        draft = DraftInput(
            "Sale", self.channel, InteractionWindow.ALL_CONTACTS, (), (TextMessage("hi"),)
        )
        made = await self.broadcasts.create(LOCAL, self.parent, draft, "")
        return f"{self.parent}/broadcasts/{made.id}"


async def _shop(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, account: str = "", **credentials: str
) -> Shop:
    token = uuid.uuid4().hex
    parent = f"merchants/{merchant}"
    fake = {"token": token, "account": account or merchant, "tier": "verified", **credentials}
    made = await Channels(ctx, hub).create(LOCAL, parent, "fake", fake, "")
    ids = [f"u-{n:02d}" for n in range(12)] + ["bad-0"]
    items = [
        ContactImport(e, "", "", FollowerState.FOLLOWING, None, False, None, from_us(1))
        for e in ids
    ]
    merged, _ = await ctx.db.write(contacts.merge, merchant, made.id, items, from_us(1))
    broadcasts = Broadcasts(ctx, hub)
    return Shop(
        ctx, broadcasts, TestSends(ctx, broadcasts), merchant, parent,
        f"{parent}/channels/{made.id}", made.id, LEDGERS[token], merged,
    )  # fmt: skip


@pytest.fixture
async def shop(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> AsyncIterator[Shop]:
    yield await _shop(ctx, hub, merchant)


async def test_only_the_named_contacts_receive_and_the_draft_is_unchanged(shop: Shop) -> None:
    name = await shop.draft()
    before = await shop.broadcasts.get(LOCAL, name)
    asker = Caller(label="ops-console", merchants=None)

    made = await shop.tests.send(asker, name, [shop.contact(3), shop.contact(0)], "")

    assert [(r.contact, r.outcome, r.reason) for r in made.recipients] == [
        (shop.people[3].id, TestOutcome.SENT, ""),
        (shop.people[0].id, TestOutcome.SENT, ""),
    ]
    assert dict(shop.ledger.received) == {"u-03": 1, "u-00": 1}
    assert made.requested_by == "ops-console"
    after = await shop.broadcasts.get(LOCAL, name)
    assert after == before  # state, counters, times: all as they were
    assert after.state is BroadcastState.DRAFT
    assert await shop.ctx.db.read(events.after, shop.merchant, START, 100) == []
    listed, token = await shop.tests.list_page(LOCAL, name, 0, "")
    assert listed == [made] and token == ""


async def test_listed_newest_first_in_pages(shop: Shop) -> None:
    name = await shop.draft()
    made = [await shop.tests.send(LOCAL, name, [shop.contact(n)], "") for n in range(3)]
    first, token = await shop.tests.list_page(LOCAL, name, 2, "")
    assert [t.id for t in first] == [made[2].id, made[1].id] and token
    rest, end = await shop.tests.list_page(LOCAL, name, 2, token)
    assert [t.id for t in rest] == [made[0].id] and end == ""
    with pytest.raises(InvalidArgument) as e:
        await shop.tests.list_page(LOCAL, name, 2, token + "x")
    assert e.value.reason == "INVALID_PAGE_TOKEN"


async def test_opted_out_blocked_and_refused_contacts_have_their_own_outcome(shop: Shop) -> None:
    await shop.ctx.db.write(
        contacts.change, shop.merchant, shop.channel_id, shop.people[1].id,
        ContactChange(opted_out=True), from_us(2),
    )  # fmt: skip
    await shop.ctx.db.write(_block, shop.people[2].id)  # unfollowed the account
    name = await shop.draft()

    made = await shop.tests.send(LOCAL, name, [shop.contact(n) for n in (0, 1, 2, 12)], "request-1")

    assert [(r.outcome, r.reason) for r in made.recipients] == [
        (TestOutcome.SENT, ""),
        (TestOutcome.SKIPPED, "CONTACT_OPTED_OUT"),
        (TestOutcome.SKIPPED, "CONTACT_BLOCKED"),
        (TestOutcome.FAILED, "INVALID_RECIPIENT"),  # bad-0: the channel refuses it
    ]
    assert dict(shop.ledger.received) == {"u-00": 1}
    # The same request again: the first result, nothing sent twice.
    again = await shop.tests.send(
        LOCAL, name, [shop.contact(n) for n in (0, 1, 2, 12)], "request-1"
    )
    assert again == made and dict(shop.ledger.received) == {"u-00": 1}
    with pytest.raises(InvalidArgument) as e:
        await shop.tests.send(LOCAL, name, [shop.contact(0)], "request-1")
    assert e.value.reason == "REQUEST_ID_REUSED"


def _block(conn: Connection, contact_id: str) -> None:
    conn.execute(
        text("UPDATE contacts SET follower_state = :s WHERE id = :c"),
        {"s": int(FollowerState.BLOCKED), "c": contact_id},
    )


async def test_quota_is_counted_and_refused_when_too_little_is_left(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _shop(ctx, hub, merchant, quota="3")
    name = await shop.draft()
    await shop.tests.send(LOCAL, name, [shop.contact(0), shop.contact(1)], "")
    quota = await shop.broadcasts.estimate(LOCAL, shop.parent, name, "", None, (), False)
    assert quota.quota_remaining == 1  # the test send counted: 2 of 3 used

    with pytest.raises(FailedPrecondition) as e:
        await shop.tests.send(LOCAL, name, [shop.contact(2), shop.contact(3)], "")
    assert e.value.reason == "QUOTA_EXCEEDED" and e.value.quota
    assert e.value.metadata == {"recipients": "2", "quota_remaining": "1"}
    assert dict(shop.ledger.received) == {"u-00": 1, "u-01": 1}
    listed, _ = await shop.tests.list_page(LOCAL, name, 0, "")
    assert len(listed) == 1  # a refused call records nothing


async def test_bad_contacts_are_named_by_index(
    ctx: ServiceContext, hub: ChannelHub, shop: Shop
) -> None:
    name = await shop.draft()
    other = await _shop(
        ctx, hub, shop.merchant, account="second"
    )  # another channel of the same merchant
    with pytest.raises(InvalidArgument) as e:
        await shop.tests.send(
            LOCAL,
            name,
            [
                shop.contact(0),
                "merchants/elsewhere/channels/c/contacts/x",
                "not a name",
                other.contact(0),
                shop.contact(0),
                f"{shop.channel}/contacts/nosuchcontact",
            ],
            "",
        )
    fields = {v.field: v.reason for v in e.value.violations}
    assert set(fields) == {"contacts[1]", "contacts[2]", "contacts[4]"}  # shape first
    with pytest.raises(InvalidArgument) as e:
        await shop.tests.send(LOCAL, name, [other.contact(0)], "")
    assert [v.field for v in e.value.violations] == ["contacts[0]"]
    with pytest.raises(InvalidArgument) as e:
        await shop.tests.send(
            LOCAL, name, [shop.contact(0), f"{shop.channel}/contacts/nosuchcontact"], ""
        )
    assert [(v.field, v.reason) for v in e.value.violations] == [
        ("contacts[1]", "CONTACT_NOT_FOUND")
    ]
    for too_many in ([], [shop.contact(n) for n in range(11)]):
        with pytest.raises(InvalidArgument) as e:
            await shop.tests.send(LOCAL, name, too_many, "")
        assert [v.field for v in e.value.violations] == ["contacts"]
    assert not shop.ledger.received and not other.ledger.received


async def test_only_a_draft_of_the_callers_merchant_with_valid_messages(shop: Shop) -> None:
    name = await shop.draft()
    stranger = Caller(label="other", merchants=frozenset({"someone-else"}))
    with pytest.raises(NotFound):
        await shop.tests.send(stranger, name, [shop.contact(0)], "")
    with pytest.raises(NotFound):
        await shop.tests.list_page(stranger, name, 0, "")
    await shop.ctx.db.write(_set_state, name.rsplit("/", 1)[1], int(BroadcastState.SENT))
    with pytest.raises(FailedPrecondition) as e:
        await shop.tests.send(LOCAL, name, [shop.contact(0)], "")
    assert e.value.reason == "BROADCAST_NOT_DRAFT"
    await shop.ctx.db.write(_set_state, name.rsplit("/", 1)[1], int(BroadcastState.DRAFT))
    await shop.ctx.db.write(
        _set_messages, name.rsplit("/", 1)[1], '[{"text": "' + "x" * 101 + '"}]'
    )
    with pytest.raises(FailedPrecondition) as e:
        await shop.tests.send(LOCAL, name, [shop.contact(0)], "")
    assert e.value.reason == "BROADCAST_MESSAGES_INVALID"
    assert not shop.ledger.received


def _set_state(conn: Connection, broadcast: str, state: int) -> None:
    conn.execute(
        text("UPDATE broadcasts SET state = :s WHERE id = :b"), {"s": state, "b": broadcast}
    )


def _set_messages(conn: Connection, broadcast: str, messages: str) -> None:
    conn.execute(
        text("UPDATE broadcasts SET messages = :m WHERE id = :b"), {"m": messages, "b": broadcast}
    )


async def test_deleting_the_draft_deletes_its_test_sends(shop: Shop) -> None:
    name = await shop.draft()
    await shop.tests.send(LOCAL, name, [shop.contact(0)], "")
    await shop.broadcasts.delete(LOCAL, name)
    left = await shop.ctx.db.read(_count_test_sends, name.rsplit("/", 1)[1])
    assert left == 0
    with pytest.raises(NotFound):
        await shop.tests.list_page(LOCAL, name, 0, "")


def _count_test_sends(conn: Connection, broadcast: str) -> int:
    return int(
        conn.execute(
            text("SELECT COUNT(*) FROM test_sends WHERE broadcast_id = :b"), {"b": broadcast}
        ).scalar_one()
    )
