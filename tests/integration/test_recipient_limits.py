"""Recipient limits on both databases, through the fake channel: a capped send reaches exactly
the first recipients by most recent interaction (never interacted last, ties by contact id), the
rest are NOT_SENT_LIMIT and counted on the broadcast, a resend goes to them; "up to the
remaining quota" takes exactly what is left; the estimate shows both figures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import BroadcastState, RecipientLimit
from broadcaster.domain.deliveries import DeliveryOutcome
from broadcaster.domain.errors import FailedPrecondition, InvalidArgument
from broadcaster.domain.model import ContactImport, FollowerState
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import contacts
from broadcaster.store.clock import from_us
from broadcaster.store.tables import contacts as contact_table
from tests.integration.test_sending import Shop, _shop

# 30 reachable contacts: interaction times with ties, and some who never interacted; plus one
# opted out and one blocked, who are never recipients whatever the limit.
TIMES = [None if n % 7 == 3 else 1_000_000 * (n % 5) for n in range(30)]


@pytest.fixture
async def shop(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> AsyncIterator[Shop]:
    async for s in _people(ctx, hub, merchant):
        yield s


async def _people(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, **credentials: str
) -> AsyncIterator[Shop]:
    async for s in _shop(ctx, hub, merchant, 0, **credentials):
        items = [
            ContactImport(
                f"u-{n:02d}", "", "", FollowerState.FOLLOWING,
                None if t is None else from_us(t), False, None, from_us(1),
            )
            for n, t in enumerate(TIMES)
        ] + [
            ContactImport("opted", "", "", FollowerState.FOLLOWING, from_us(9**9), True, None,
                          from_us(1)),
            ContactImport("blocked", "", "", FollowerState.BLOCKED, from_us(9**9), False, None,
                          from_us(1)),
        ]  # fmt: skip
        await ctx.db.write(contacts.merge, merchant, s.channel_id, items, from_us(1))
        s.people[:] = [f"u-{n:02d}" for n in range(len(TIMES))]
        yield s


async def _documented_order(shop: Shop) -> list[str]:
    """The reachable contacts' external ids, most recent interaction first, never interacted
    last, ties by contact id: computed here, independently of the snapshot's SQL."""

    def read(conn):  # type: ignore[no-untyped-def]
        c = contact_table.c
        return conn.execute(
            select(c.id, c.external_id, c.last_interaction_time).where(
                c.channel_id == shop.channel_id, c.external_id.like("u-%")
            )
        ).all()

    rows = await shop.ctx.db.read(read)
    never = [r for r in rows if r.last_interaction_time is None]
    known = [r for r in rows if r.last_interaction_time is not None]
    known.sort(key=lambda r: r.id)
    known.sort(key=lambda r: r.last_interaction_time, reverse=True)
    return [r.external_id for r in known + sorted(never, key=lambda r: r.id)]


async def test_a_capped_send_reaches_the_first_by_interaction_and_a_resend_the_rest(
    shop: Shop,
) -> None:
    name = await shop.draft()
    estimate = await shop.broadcasts.estimate(
        LOCAL, shop.parent, name, "", None, (), False, RecipientLimit(12)
    )
    assert (estimate.expected_recipients, estimate.capped_recipients) == (30, 12)
    assert estimate.left_out_by_limit == 18 and not estimate.exceeds_quota
    sending = await shop.sending.send(LOCAL, name, "", RecipientLimit(12))
    assert sending.recipient_limit == RecipientLimit(12)
    assert (sending.counters.total, sending.counters.left_out_by_limit) == (12, 18)
    assert sending.counters.excluded == 2  # opted out and blocked: not counted as left out
    done = await shop.finished(name)
    assert done.state is BroadcastState.SENT and done.counters.sent == 12
    order = await _documented_order(shop)
    assert dict(shop.ledger.received) == dict.fromkeys(order[:12], 1)
    assert await shop.outcomes(done.id) == {
        DeliveryOutcome.SENT: 12,
        DeliveryOutcome.NOT_SENT_LIMIT: 18,
    }
    _, left_out, _ = await shop.sending.deliveries(
        LOCAL, name, 100, "", DeliveryOutcome.NOT_SENT_LIMIT
    )
    # Numbered after the recipients, in the same order.
    assert [d.external_id for d in left_out] == order[12:]
    assert [d.seq for d in left_out] == list(range(12, 30))

    # The recipients left out were never attempted: a resend of the unsent goes to them.
    resend = await shop.broadcasts.copy(LOCAL, name, "", unsent_only=True)
    resend_name = f"{shop.parent}/broadcasts/{resend.id}"
    again_estimate = await shop.broadcasts.estimate(
        LOCAL, shop.parent, resend_name, "", None, (), False
    )
    assert again_estimate.expected_recipients == 18
    await shop.sending.send(LOCAL, resend_name, "")
    again = await shop.finished(resend_name)
    assert (again.counters.total, again.counters.sent, again.recipient_limit) == (18, 18, None)
    assert dict(shop.ledger.received) == dict.fromkeys(order, 1)


async def test_a_capped_resend_takes_the_first_of_the_unreached(shop: Shop) -> None:
    name = await shop.draft()
    await shop.sending.send(LOCAL, name, "", RecipientLimit(10))
    await shop.finished(name)
    resend = await shop.broadcasts.copy(LOCAL, name, "", unsent_only=True)
    resend_name = f"{shop.parent}/broadcasts/{resend.id}"
    capped = await shop.sending.send(LOCAL, resend_name, "", RecipientLimit(5))
    assert (capped.counters.total, capped.counters.left_out_by_limit) == (5, 15)
    await shop.finished(resend_name)
    order = await _documented_order(shop)
    assert dict(shop.ledger.received) == dict.fromkeys(order[:15], 1)


async def test_a_limit_above_the_audience_sends_to_all(shop: Shop) -> None:
    name = await shop.draft()
    sending = await shop.sending.send(LOCAL, name, "", RecipientLimit(1000))
    assert (sending.counters.total, sending.counters.left_out_by_limit) == (30, 0)
    done = await shop.finished(name)
    assert await shop.outcomes(done.id) == {DeliveryOutcome.SENT: 30}
    assert sum(shop.ledger.received.values()) == 30


async def test_up_to_the_remaining_quota_takes_exactly_what_is_left(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _people(ctx, hub, merchant, quota="100"):
        shop.ledger.used = 93  # 7 left this month
        name = await shop.draft()
        unlimited = await shop.broadcasts.estimate(LOCAL, shop.parent, name, "", None, (), False)
        assert unlimited.exceeds_quota and unlimited.capped_recipients == 30
        estimate = await shop.broadcasts.estimate(
            LOCAL, shop.parent, name, "", None, (), False, RecipientLimit(None)
        )
        assert (estimate.expected_recipients, estimate.capped_recipients) == (30, 7)
        assert estimate.left_out_by_limit == 23 and not estimate.exceeds_quota
        # A number above the remaining quota is still refused.
        with pytest.raises(FailedPrecondition) as e:
            await shop.sending.send(LOCAL, name, "", RecipientLimit(8))
        assert e.value.reason == "QUOTA_EXCEEDED"
        sending = await shop.sending.send(LOCAL, name, "", RecipientLimit(None))
        assert sending.recipient_limit == RecipientLimit(None)
        assert (sending.counters.total, sending.counters.left_out_by_limit) == (7, 23)
        done = await shop.finished(name)
        assert done.state is BroadcastState.SENT and done.counters.sent == 7
        order = await _documented_order(shop)
        assert dict(shop.ledger.received) == dict.fromkeys(order[:7], 1)


async def test_up_to_the_remaining_quota_with_none_left_is_refused(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _people(ctx, hub, merchant, quota="100"):
        shop.ledger.used = 100
        name = await shop.draft()
        with pytest.raises(FailedPrecondition) as e:
            await shop.sending.send(LOCAL, name, "", RecipientLimit(None))
        assert e.value.reason == "QUOTA_EXCEEDED"
        assert e.value.metadata == {"recipients": "30", "quota_remaining": "0"}
        assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.DRAFT


@pytest.mark.parametrize("bad", [0, -1, -(2**63), 100_000_001, 2**63 - 1])
async def test_a_limit_out_of_range_is_refused_with_its_field(shop: Shop, bad: int) -> None:
    name = await shop.draft()
    for attempt in (
        shop.sending.send(LOCAL, name, "", RecipientLimit(bad)),
        shop.broadcasts.estimate(
            LOCAL, shop.parent, name, "", None, (), False, RecipientLimit(bad)
        ),
    ):
        with pytest.raises(InvalidArgument) as e:
            await attempt
        assert [v.field for v in e.value.violations] == ["recipient_limit.max_recipients"]
    assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.DRAFT
    assert not shop.ledger.received
