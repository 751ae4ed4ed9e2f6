"""Lifecycle races and careless callers, with the core alone (the fake channel) on both
databases: a channel deleted or refusing its credentials mid-send, a resend moved to another
channel, request ids reused for other requests, a customer group deleted under a draft, and a
rate limit that outlasts the key window."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text

from broadcaster.channels.manager import PluginManager
from broadcaster.dispatch.engine import Settings
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import BroadcastState, Estimate
from broadcaster.domain.deliveries import DeliveryOutcome
from broadcaster.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.model import ChannelState, ContactImport, FollowerState
from broadcaster.domain.names import ChannelName
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.sending import Sending
from broadcaster.store import contacts, dispatch, groups, snapshot
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.dispatch import ClaimedBatch
from broadcaster.store.sealing import Sealer
from tests import fakechannel
from tests.fakechannel import LEDGERS
from tests.integration.test_sending import Shop, _claimed_by_the_dead, _open_batches, _shop


@pytest.fixture
async def shop(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> AsyncIterator[Shop]:
    async for s in _shop(ctx, hub, merchant, 230):
        yield s


async def _second_channel(shop: Shop, hub: ChannelHub, people: list[str]) -> tuple[str, str]:
    """Another channel of the shop's merchant with contacts of its own: (name, token)."""
    token = uuid.uuid4().hex
    made = await Channels(shop.ctx, hub).create(
        LOCAL,
        shop.parent,
        "fake",
        {"token": token, "account": f"other-{token[:8]}", "tier": "verified"},
        "",
    )
    items = [
        ContactImport(e, "", "", FollowerState.FOLLOWING, None, False, None, from_us(1))
        for e in people
    ]
    merchant = shop.parent.split("/")[1]
    await shop.ctx.db.write(contacts.merge, merchant, made.id, items, from_us(1))
    return str(ChannelName(merchant, made.id)), token


def _draft(shop: Shop, channel: str = "", group: str = "") -> DraftInput:
    groups_ = (group,) if group else ()
    return DraftInput(
        "Sale", channel or shop.channel, InteractionWindow.ALL_CONTACTS, groups_,
        (TextMessage("hi"),),
    )  # fmt: skip


# -- defect 3: a resend stays on its source's channel --------------------------------------------


async def _finished_with_unsent(shop: Shop) -> str:
    """A broadcast that ran out of quota: some recipients NOT_SENT_QUOTA."""
    name = await shop.draft()
    await shop.sending.send(LOCAL, name, "")
    shop.ledger.used = 180
    done = await shop.finished(name)
    assert done.failure_reason == "QUOTA_EXHAUSTED"
    shop.ledger.used = 0
    return name


async def test_a_resend_cannot_move_to_another_channel(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, quota="300"):
        source = await _finished_with_unsent(shop)
        other, token = await _second_channel(shop, hub, [f"v-{n}" for n in range(20)])
        resend = await shop.broadcasts.copy(LOCAL, source, "", unsent_only=True)
        resend_name = f"{shop.parent}/broadcasts/{resend.id}"
        with pytest.raises(FailedPrecondition) as e:
            await shop.broadcasts.update(LOCAL, resend_name, ["channel"], _draft(shop, other))
        assert e.value.reason == "RESEND_CHANNEL_FIXED"
        kept = await shop.broadcasts.get(LOCAL, resend_name)
        assert (kept.channel, kept.resend_of) == (shop.channel_id, resend.resend_of)
        # A new audience makes it an ordinary draft, which may go anywhere.
        moved = await shop.broadcasts.update(
            LOCAL, resend_name, ["channel", "audience"], _draft(shop, other)
        )
        assert moved.resend_of == "" and moved.channel == other.rsplit("/", 1)[1]
        assert not LEDGERS[token].received


async def test_the_resend_snapshot_takes_contacts_of_its_own_channel_only(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A resend draft moved to another channel before moves were refused: its snapshot and
    estimate find none of the source's recipients there, and nothing is reported sent."""
    async for shop in _shop(ctx, hub, merchant, 230, quota="300"):
        source = await _finished_with_unsent(shop)
        other, token = await _second_channel(shop, hub, [f"v-{n}" for n in range(20)])
        resend = await shop.broadcasts.copy(LOCAL, source, "", unsent_only=True)
        resend_name = f"{shop.parent}/broadcasts/{resend.id}"
        other_id = other.rsplit("/", 1)[1]

        await ctx.db.write(_move, resend.id, other_id)
        counted = await ctx.db.read(snapshot.count_resend, merchant, other_id, resend.resend_of)
        assert counted.matched == 0
        sent = await shop.sending.send(LOCAL, resend_name, "")
        assert (sent.state, sent.counters.total, sent.counters.sent) == (BroadcastState.SENT, 0, 0)
        assert not LEDGERS[token].received


def _move(conn: Connection, broadcast: str, channel: str) -> None:
    conn.execute(
        text("UPDATE broadcasts SET channel_id = :ch WHERE id = :b"),
        {"ch": channel, "b": broadcast},
    )


# -- defect 5: request ids are scoped by method and bound to their request ------------------------


async def test_a_send_request_id_reused_for_another_draft_is_refused(shop: Shop) -> None:
    first, second = await shop.draft("One"), await shop.draft("Two")
    await shop.sending.send(LOCAL, first, "req-send")
    with pytest.raises(InvalidArgument) as e:
        await shop.sending.send(LOCAL, second, "req-send")
    assert e.value.reason == "REQUEST_ID_REUSED"
    assert (await shop.broadcasts.get(LOCAL, second)).state is BroadcastState.DRAFT
    # The same request again is answered with the first result.
    again = await shop.sending.send(LOCAL, first, "req-send")
    assert again.id == first.rsplit("/", 1)[1]
    await shop.finished(first)
    assert dict(shop.ledger.received) == dict.fromkeys(shop.people, 1)


async def test_copy_and_create_request_ids_do_not_mix(shop: Shop) -> None:
    created = await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop), "req-1")
    source = await shop.draft("Source")
    copied = await shop.broadcasts.copy(LOCAL, source, "req-1")
    assert copied.id != created.id and copied.copied_from == source.rsplit("/", 1)[1]
    assert (await shop.broadcasts.copy(LOCAL, source, "req-1")).id == copied.id
    other = await shop.draft("Other")
    with pytest.raises(InvalidArgument) as e:
        await shop.broadcasts.copy(LOCAL, other, "req-1")
    assert e.value.reason == "REQUEST_ID_REUSED"
    # CreateBroadcast: the same body again returns the first draft; another body is refused.
    assert (await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop), "req-1")).id == (
        created.id
    )
    different = DraftInput(
        "Other sale", shop.channel, InteractionWindow.ALL_CONTACTS, (), (TextMessage("hi"),)
    )
    with pytest.raises(InvalidArgument) as e:
        await shop.broadcasts.create(LOCAL, shop.parent, different, "req-1")
    assert e.value.reason == "REQUEST_ID_REUSED"


async def test_a_request_id_recorded_before_fingerprints_still_answers(shop: Shop) -> None:
    """Rows written before requests were fingerprinted answer as they did: the first result."""
    made = await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop), "legacy")

    def forget_fingerprint(conn: Connection) -> None:
        conn.execute(text("UPDATE idempotent_requests SET request_hash = NULL"))

    await shop.ctx.db.write(forget_fingerprint)
    assert (await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop), "legacy")).id == (
        made.id
    )


# -- defect 7: a customer group under a draft ----------------------------------------------------


async def _group_of_everyone(shop: Shop) -> str:
    made = await CustomerGroups(shop.ctx).create(LOCAL, shop.parent, "VIP", "", "")
    group = f"{shop.parent}/customerGroups/{made.id}"

    def link(conn: Connection) -> None:
        conn.execute(
            text("UPDATE contacts SET customer_id = external_id WHERE channel_id = :ch"),
            {"ch": shop.channel_id},
        )

    await shop.ctx.db.write(link)
    await CustomerGroups(shop.ctx).add_members(LOCAL, group, list(shop.people))
    return group


async def test_a_group_used_by_a_draft_cannot_be_deleted(shop: Shop) -> None:
    group = await _group_of_everyone(shop)
    service = CustomerGroups(shop.ctx)
    draft = await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop, group=group), "")
    with pytest.raises(FailedPrecondition) as e:
        await service.delete(LOCAL, group)
    assert e.value.reason == "CUSTOMER_GROUP_IN_USE"
    assert e.value.metadata["broadcasts"] == f"{shop.parent}/broadcasts/{draft.id}"
    assert [v.subject for v in e.value.violations] == [f"{shop.parent}/broadcasts/{draft.id}"]
    # Sent, the draft no longer needs the group: it can go.
    name = f"{shop.parent}/broadcasts/{draft.id}"
    assert (await shop.sending.send(LOCAL, name, "")).counters.total == 230
    await shop.finished(name)
    await service.delete(LOCAL, group)
    with pytest.raises(NotFound):
        await service.get(LOCAL, group)


class _DeletingAfterEstimate(Broadcasts):
    """A DeleteCustomerGroup that commits between Send's estimate and its snapshot."""

    group_id = ""

    async def estimate_for(
        self, channel: ChannelName, audience: object, resend_of: str = "", **options: Any
    ) -> Estimate:
        found = await super().estimate_for(channel, audience, resend_of, **options)  # type: ignore[arg-type]
        await self._ctx.db.write(groups.delete_group, channel.merchant, self.group_id)
        return found


async def test_a_group_deleted_between_estimate_and_snapshot_never_sends_to_nobody(
    shop: Shop, hub: ChannelHub
) -> None:
    group = await _group_of_everyone(shop)
    name = (
        f"{shop.parent}/broadcasts/"
        + (await shop.broadcasts.create(LOCAL, shop.parent, _draft(shop, group=group), "")).id
    )
    racing = _DeletingAfterEstimate(shop.ctx, hub)
    racing.group_id = group.rsplit("/", 1)[1]
    sending = Sending(shop.ctx, racing, shop.dispatcher.wake)
    with pytest.raises(NotFound) as e:
        await sending.send(LOCAL, name, "")
    assert e.value.reason == "CUSTOMER_GROUP_NOT_FOUND"
    assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.DRAFT
    assert not shop.ledger.received


# -- defect 8: a rate limit that outlasts the key window -----------------------------------------

SERIAL = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=1)


def _batch_row(conn: Connection, broadcast: str, batch: int) -> tuple[str, int, int | None, int]:
    key, attempts, first, due = conn.execute(
        text(
            "SELECT idempotency_key, attempts, first_attempt_time, due_time FROM batches"
            " WHERE broadcast_id = :b AND batch = :n"
        ),
        {"b": broadcast, "n": batch},
    ).one()
    return str(key), int(attempts), first, int(due)


def _due_now(conn: Connection, broadcast: str) -> None:
    conn.execute(
        text("UPDATE batches SET due_time = 0 WHERE broadcast_id = :b AND state <> 1"),
        {"b": broadcast},
    )


async def test_a_long_rate_limit_starts_the_batch_over_with_a_fresh_key(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, settings=SERIAL):
        shop.ledger.script[:] = ["rate-long"]  # 429, Retry-After: twice the key window
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        async with asyncio.timeout(30):
            while True:
                if (await shop.broadcasts.get(LOCAL, name)).counters.sent >= 180:
                    break
                await asyncio.sleep(0.02)
        (first_key,) = [k for k in shop.ledger.keys_seen if k not in shop.ledger.accepted_keys]
        key, attempts, first_attempt, due = await ctx.db.read(_batch_row, sent.id, 0)
        assert key != first_key and (attempts, first_attempt) == (0, None)
        assert due >= to_us(ctx.now() + timedelta(seconds=7000))  # after the Retry-After
        broadcast = await shop.broadcasts.get(LOCAL, name)
        assert broadcast.state is BroadcastState.SENDING and broadcast.counters.failed == 0
        await ctx.db.write(_due_now, sent.id)  # the wait is over
        done = await shop.finished(name)
        assert (done.state, done.counters.sent, done.counters.failed) == (
            BroadcastState.SENT, 230, 0,
        )  # fmt: skip
        assert shop.ledger.keys_seen[first_key] == 1 and shop.ledger.keys_seen[key] == 1
        assert dict(shop.ledger.received) == dict.fromkeys(shop.people, 1)


async def test_a_long_rate_limit_after_a_possible_acceptance_is_unknown(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, settings=SERIAL):
        shop.ledger.script[:] = ["fail", "rate-long"]  # a 5xx, then the long 429
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        done = await shop.finished(name)
        assert (done.state, done.counters.sent, done.counters.failed) == (
            BroadcastState.SENT, 180, 50,
        )  # fmt: skip
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {DeliveryOutcome.SENT: 180, DeliveryOutcome.UNKNOWN: 50}


async def test_a_batch_taken_over_is_ambiguous_however_it_is_refused(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A process took the batch before and died: what its attempt came to is unknown here, so
    even a definite refusal now does not earn the batch a fresh key."""
    async for shop in _shop(ctx, hub, merchant, 230, settings=SERIAL, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        claimed = await _claimed_by_the_dead(ctx, shop.channel_id)
        shop.ledger.script[:] = ["rate-long"]
        shop.dispatcher.start()
        done = await shop.finished(name)
        assert (done.counters.sent, done.counters.failed) == (180, 50)
        key, *_ = await ctx.db.read(_batch_row, sent.id, claimed.batch)
        assert key == claimed.idempotency_key
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {DeliveryOutcome.SENT: 180, DeliveryOutcome.UNKNOWN: 50}


# -- defect 2: the channel goes away mid-send ----------------------------------------------------

SLOW = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=8)


async def _sending(shop: Shop, name: str, at_least: int) -> None:
    async with asyncio.timeout(30):
        while True:
            if sum(shop.ledger.received.values()) >= at_least:
                return
            await asyncio.sleep(0.005)


async def test_deleting_the_channel_stops_its_broadcast_at_once(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 2000, settings=SLOW, send_delay_ms="30"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await _sending(shop, name, 200)
        await Channels(ctx, hub).delete(LOCAL, shop.channel)
        requests_at_return = shop.ledger.attempts
        done = await shop.finished(name)
        # Nothing left after DeleteChannel returned; what was with the channel was recorded.
        assert shop.ledger.attempts == requests_at_return
        assert (done.state, done.failure_reason) == (BroadcastState.FAILED, "CHANNEL_NOT_CONNECTED")
        got = sum(shop.ledger.received.values())
        assert max(shop.ledger.received.values()) == 1 and got < 2000
        assert (done.counters.sent, done.counters.failed) == (got, 0)
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {
            DeliveryOutcome.SENT: got,
            DeliveryOutcome.NOT_SENT_STOPPED: 2000 - got,
        }


async def test_deleting_the_channel_on_another_replica_stops_this_one(
    ctx: ServiceContext, merchant: str
) -> None:
    """The dispatching replica has its own channel hub: it learns of the deletion when it next
    renews its lease (a fifth of the lease term) and sends nothing after that."""
    async for hub in _hub(ctx):
        async for shop in _shop(ctx, hub, merchant, 3000, settings=SLOW, send_delay_ms="30"):
            name = await shop.draft()
            await shop.sending.send(LOCAL, name, "")
            await _sending(shop, name, 200)
            other = ChannelHub(hub.registry, hub.sealer, ctx.db, {})
            try:
                await Channels(ctx, other).delete(LOCAL, shop.channel)
            finally:
                await other.close()
            at_delete = shop.ledger.attempts
            done = await shop.finished(name)
            assert (done.state, done.failure_reason) == (
                BroadcastState.FAILED, "CHANNEL_NOT_CONNECTED",
            )  # fmt: skip
            # At most one renewal period (0.2 s) of sends at 100/s, plus those in flight.
            assert shop.ledger.attempts - at_delete <= 20 + SLOW.in_flight
            got = sum(shop.ledger.received.values())
            assert max(shop.ledger.received.values()) == 1 and got < 3000
            outcomes = await shop.outcomes(done.id)
            assert outcomes == {
                DeliveryOutcome.SENT: got,
                DeliveryOutcome.NOT_SENT_STOPPED: 3000 - got,
            }


async def _hold(ctx: ServiceContext, shop: Shop, owner: str, limit: int) -> list[ClaimedBatch]:
    """`owner` takes the shop's channel's lease and claims up to `limit` of its batches, leased
    for ten minutes, as a dispatching run would."""
    now = ctx.now()
    assert await ctx.db.write(
        dispatch.acquire_channel, shop.channel_id, owner, now + timedelta(seconds=5), now
    )
    claimed: list[ClaimedBatch] = await ctx.db.write(
        dispatch.claim,
        channel=shop.channel_id,
        owner=owner,
        lease_until=now + timedelta(seconds=600),
        now=now,
        limit=limit,
    )
    return claimed


async def test_a_run_letting_batches_go_after_its_channel_was_deleted_sends_none(
    ctx: ServiceContext, merchant: str
) -> None:
    """The channel is deleted on another replica, and before this one's next renewal tells it,
    its run lets its claimed batches go unsent (its lease lapsed, or it hands the channel
    over). Those batches never went: NOT_SENT_STOPPED, not OUTCOME_UNKNOWN; and the channel's
    dispatch ends with the run, rather than a run starting again and again until the hub
    forgets the channel."""
    async for hub in _hub(ctx):
        async for shop in _shop(ctx, hub, merchant, 3000, settings=SLOW, send_delay_ms="30"):
            name = await shop.draft()
            await shop.sending.send(LOCAL, name, "")
            await _sending(shop, name, 200)
            leases = shop.dispatcher._leases
            renew = leases.renew
            leases.renew = _not_now  # type: ignore[method-assign]
            try:
                other = ChannelHub(hub.registry, hub.sealer, ctx.db, {})
                try:
                    await Channels(ctx, other).delete(LOCAL, shop.channel)
                finally:
                    await other.close()
                shop.dispatcher.set_aside(shop.channel_id, 0.5)  # a next run comes after this
                ending = shop.dispatcher._channels[shop.channel_id]
                shop.dispatcher._runs[shop.channel_id].hand_over()
                async with asyncio.timeout(10):
                    await ending
            finally:
                leases.renew = renew  # type: ignore[method-assign]
            done = await shop.finished(name)
            assert (done.state, done.failure_reason) == (
                BroadcastState.FAILED, "CHANNEL_NOT_CONNECTED",
            )  # fmt: skip
            got = sum(shop.ledger.received.values())
            assert max(shop.ledger.received.values()) == 1 and got < 3000
            assert await shop.outcomes(done.id) == {
                DeliveryOutcome.SENT: got,
                DeliveryOutcome.NOT_SENT_STOPPED: 3000 - got,
            }
            assert done.counters.failed == 0


async def _not_now() -> None:
    """A lease renewal that does not come in time."""


async def test_a_claim_taken_back_counts_as_never_attempted(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Store level: batches a run claimed and let go unsent have their claims taken back; the
    next holder's claim is their first attempt, and if their broadcast was cancelled
    meanwhile (the cancel left them open while claimed) they are closed as not sent."""
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        first, second, third = await _hold(ctx, shop, "me", 3)
        # The first was sent; the other two never were.
        await ctx.db.write(
            dispatch.leave_channel,
            shop.channel_id,
            "me",
            [(second.broadcast, second.batch), (third.broadcast, third.batch)],
        )
        again = {c.batch: c.attempts for c in await _hold(ctx, shop, "next", 3)}
        assert again == {first.batch: 2, second.batch: 1, third.batch: 1}
        await ctx.db.write(dispatch.undo_claims, "next", [(second.broadcast, second.batch)])
        cancelled = await shop.sending.cancel(LOCAL, name)
        assert cancelled.state is BroadcastState.CANCELLED
        # The cancel closed the batches never attempted; the other two are the holder's.
        assert await ctx.db.read(_open_batches, sent.id) == 2
        await ctx.db.write(
            dispatch.leave_channel, shop.channel_id, "next", [(third.broadcast, third.batch)]
        )
        assert await ctx.db.read(_open_batches, sent.id) == 1  # the first, which may have gone
        outcomes = await shop.outcomes(sent.id)
        assert outcomes == {DeliveryOutcome.PENDING: 50, DeliveryOutcome.NOT_SENT_CANCELLED: 180}


async def test_batches_let_go_unsent_after_the_channel_was_deleted_are_not_sent(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Store level: the channel was deleted while a run held three batches, and the run let two
    of them go unsent: those are closed as not sent when it leaves; the one it sent stays open
    until abandoned, as OUTCOME_UNKNOWN."""
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        _, *unsent = await _hold(ctx, shop, "me", 3)
        await Channels(ctx, hub).delete(LOCAL, shop.channel)
        assert await ctx.db.read(_open_batches, sent.id) == 3
        await ctx.db.write(
            dispatch.leave_channel, shop.channel_id, "me", [(c.broadcast, c.batch) for c in unsent]
        )
        assert await ctx.db.read(_open_batches, sent.id) == 1
        await ctx.db.write(
            dispatch.abandon_channel, shop.channel_id, "CHANNEL_NOT_CONNECTED", ctx.now()
        )
        assert await ctx.db.read(_open_batches, sent.id) == 0
        outcomes = await shop.outcomes(sent.id)
        assert outcomes == {DeliveryOutcome.UNKNOWN: 50, DeliveryOutcome.NOT_SENT_STOPPED: 180}
        assert (await shop.broadcasts.get(LOCAL, name)).counters.failed == 50


async def test_a_run_leaves_its_channel_in_the_claim_that_finds_nothing_open(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Store level: a lease holder with nothing in flight claims and, if nothing is open on the
    channel, lets its lease go in the same transaction. With batches to claim it claims them and
    keeps the lease; with batches open but none due (all its own, leased), it claims none and
    keeps the lease; with none open, it leaves: another owner takes the channel at once. A run
    whose lease another owner took has left too, and lets go of nothing of the other's."""
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        now = ctx.now()
        assert await ctx.db.write(
            dispatch.acquire_channel, shop.channel_id, "me", now + timedelta(seconds=60), now
        )
        claiming: dict[str, Any] = {
            "channel": shop.channel_id,
            "owner": "me",
            "lease_until": now + timedelta(seconds=600),
            "now": now,
            "limit": 100,
        }
        claimed, left = await ctx.db.write(dispatch.claim_or_leave, **claiming)
        assert (len(claimed), left) == (await ctx.db.read(_open_batches, sent.id), False)
        assert await ctx.db.write(dispatch.claim_or_leave, **claiming) == ([], False)
        taken = dispatch.acquire_channel  # by another owner: refused while "me" holds the lease
        assert not await ctx.db.write(taken, shop.channel_id, "other", now, now)
        # Nothing of it goes: the claims are taken back, and the cancel closes every batch.
        unsent = [(c.broadcast, c.batch) for c in claimed]
        await ctx.db.write(dispatch.undo_claims, "me", unsent)
        await shop.sending.cancel(LOCAL, name)
        assert await ctx.db.read(_open_batches, sent.id) == 0
        assert await ctx.db.write(dispatch.claim_or_leave, **claiming) == ([], True)
        assert await ctx.db.write(taken, shop.channel_id, "other", now, now)
        assert await ctx.db.write(dispatch.claim_or_leave, **claiming) == ([], True)
        assert await ctx.db.read(_lease_owner, shop.channel_id) == "other"


def _lease_owner(conn: Connection, channel: str) -> str | None:
    return conn.execute(
        text("SELECT owner FROM channel_leases WHERE channel_id = :ch"), {"ch": channel}
    ).scalar_one_or_none()


async def _hub(ctx: ServiceContext) -> AsyncIterator[ChannelHub]:
    """A channel hub of its own: another replica's."""
    registry = PluginManager.load((), [fakechannel]).register_channels()
    running = ChannelHub(registry, Sealer(("k" * 32,)), ctx.db, {})
    try:
        yield running
    finally:
        await running.close()


async def test_credentials_refused_mid_send_stop_the_channel(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 2000, settings=SLOW, send_delay_ms="30"):
        first, second = await shop.draft("One"), await shop.draft("Two")
        await shop.sending.send(LOCAL, first, "")
        await shop.sending.send(LOCAL, second, "")
        await _sending(shop, first, 200)
        shop.ledger.revoked = True  # the token was revoked in the channel's console
        at_revoke = shop.ledger.attempts
        done = [await shop.finished(first), await shop.finished(second)]
        # Only requests already on their way when the first refusal came back met it.
        assert shop.ledger.attempts - at_revoke <= 2 * SLOW.in_flight
        got = sum(shop.ledger.received.values())
        assert max(shop.ledger.received.values()) <= 2
        for b in done:
            assert (b.state, b.failure_reason) == (
                BroadcastState.FAILED, "CHANNEL_CREDENTIALS_INVALID",
            )  # fmt: skip
            assert b.counters.failed == 0
        outcomes = [await shop.outcomes(b.id) for b in done]
        assert sum(o.get(DeliveryOutcome.SENT, 0) for o in outcomes) == got
        assert set().union(*outcomes) <= {DeliveryOutcome.SENT, DeliveryOutcome.NOT_SENT_STOPPED}
        channel = await Channels(ctx, hub).get(LOCAL, shop.channel)
        assert channel.state is ChannelState.CREDENTIALS_INVALID
        assert not await ctx.db.read(_open_batches, done[0].id)


async def test_a_stopped_broadcasts_claimed_batches_never_go(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Store level: after the channel is deleted nothing of it can be claimed or renewed, and
    its sending broadcasts have failed with their never-attempted batches not sent."""
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        now = ctx.now()
        (claimed,) = await _hold(ctx, shop, "me", 1)
        await Channels(ctx, hub).delete(LOCAL, shop.channel)
        until = now + timedelta(seconds=5)
        assert not await ctx.db.write(dispatch.renew_channel, shop.channel_id, "me", until)
        assert not await ctx.db.read(dispatch.channel_live, shop.channel_id)
        later = now + timedelta(seconds=601)
        assert not await ctx.db.write(
            dispatch.claim,
            channel=shop.channel_id,
            owner="other",
            lease_until=later + timedelta(seconds=600),
            now=later,
            limit=10,
        )
        failed = await shop.broadcasts.get(LOCAL, name)
        assert (failed.state, failed.failure_reason) == (
            BroadcastState.FAILED, "CHANNEL_NOT_CONNECTED",
        )  # fmt: skip
        # The claimed batch is resolved by its holder: it never left.
        await ctx.db.write(
            dispatch.record_unresolved, claimed, DeliveryOutcome.NOT_SENT_STOPPED, "", now
        )
        outcomes = await shop.outcomes(sent.id)
        assert outcomes == {DeliveryOutcome.NOT_SENT_STOPPED: 230}
        assert (await shop.broadcasts.get(LOCAL, name)).counters.failed == 0
