"""Sending with the core alone (the fake channel): every recipient exactly once through transient
errors, lost answers, takeovers and expired keys; invalid recipients isolated; quota, cancel and
rejection ending with exact counters; resends; concurrent Sends starting one dispatch."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, text

from broadcaster.dispatch import engine
from broadcaster.dispatch.engine import Dispatcher, Settings
from broadcaster.dispatch.recorder import Recorder
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Broadcast, BroadcastState
from broadcaster.domain.deliveries import START, DeliveryOutcome, EventKind
from broadcaster.domain.errors import FailedPrecondition
from broadcaster.domain.ids import new_id
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.model import ContactFilter, ContactImport, FollowerState
from broadcaster.domain.names import BroadcastName
from broadcaster.domain.paging import Page
from broadcaster.services import sending
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.sending import Sending
from broadcaster.store import contacts, dispatch, events, snapshot
from broadcaster.store import deliveries as delivery_repo
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.database import Database
from tests.fakechannel import LEDGERS, Ledger

FAST = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=8)


@dataclass
class Shop:
    ctx: ServiceContext
    broadcasts: Broadcasts
    sending: Sending
    dispatcher: Dispatcher
    parent: str
    channel: str  # resource name
    channel_id: str
    ledger: Ledger
    people: list[str]

    async def draft(self, name: str = "Sale") -> str:
        draft = DraftInput(
            name, self.channel, InteractionWindow.ALL_CONTACTS, (), (TextMessage("hi"),)
        )
        made = await self.broadcasts.create(LOCAL, self.parent, draft, "")
        return f"{self.parent}/broadcasts/{made.id}"

    async def finished(self, name: str) -> Broadcast:
        """The broadcast once it has left SENDING (and SCHEDULED) and none of its batches is
        open."""
        async with asyncio.timeout(30):
            while True:
                b = await self.broadcasts.get(LOCAL, name)
                going = (BroadcastState.SENDING, BroadcastState.SCHEDULED)
                if b.state not in going and not await self.ctx.db.read(_open_batches, b.id):
                    return await self.broadcasts.get(LOCAL, name)
                await asyncio.sleep(0.02)

    async def outcomes(self, broadcast_id: str) -> dict[DeliveryOutcome, int]:
        """How many deliveries of each outcome, as ListDeliveries reads them."""
        found = await self.ctx.db.read(delivery_repo.page, broadcast_id, None, None, 100_000)
        return dict(Counter(d.outcome for d in found))


def _open_batches(conn: Connection, broadcast: str, *, leased: bool = False) -> int:
    """The broadcast's open batches; `leased`: only those claimed by someone."""
    return int(
        conn.execute(
            text(
                "SELECT COUNT(*) FROM batches WHERE broadcast_id = :b AND state <> 1"
                + (" AND lease_owner <> ''" if leased else "")
            ),
            {"b": broadcast},
        ).scalar_one()
    )


def _batch_keys(conn: Connection, broadcast: str) -> set[str]:
    """The idempotency keys of the broadcast's batches."""
    found = conn.execute(
        text("SELECT idempotency_key FROM batches WHERE broadcast_id = :b"), {"b": broadcast}
    )
    return {str(k) for (k,) in found}


def _age_batch(conn: Connection, broadcast: str, batch: int, when: datetime) -> None:
    conn.execute(
        text("UPDATE batches SET first_attempt_time = :t WHERE broadcast_id = :b AND batch = :n"),
        {"t": to_us(when), "b": broadcast, "n": batch},
    )


async def _claimed_by_the_dead(
    ctx: ServiceContext, channel_id: str, first_attempt_age: timedelta | None = None
) -> dispatch.ClaimedBatch:
    """One batch of the channel claimed by a process that died at once: its lease has run out,
    and its first attempt was `first_attempt_age` ago (left as now when None)."""
    now = ctx.now()
    (claimed,) = await ctx.db.write(
        dispatch.claim,
        channel=channel_id,
        owner="dead",
        lease_until=now + timedelta(microseconds=1),
        now=now,
        limit=1,
    )
    if first_attempt_age is not None:
        await ctx.db.write(_age_batch, claimed.broadcast, claimed.batch, now - first_attempt_age)
    return claimed


async def _claim(
    ctx: ServiceContext, channel_id: str, owner: str, lease: timedelta, limit: int
) -> list[dispatch.ClaimedBatch]:
    """Claim up to `limit` due batches of the channel for `owner`, leased for `lease`."""
    now = ctx.now()
    return await ctx.db.write(
        dispatch.claim,
        channel=channel_id,
        owner=owner,
        lease_until=now + lease,
        now=now,
        limit=limit,
    )


async def _shop(
    ctx: ServiceContext,
    hub: ChannelHub,
    merchant: str,
    people: int,
    *,
    bad: int = 0,
    settings: Settings = FAST,
    start: bool = True,
    **credentials: str,
) -> AsyncGenerator[Shop, None]:
    token = uuid.uuid4().hex
    parent = f"merchants/{merchant}"
    made = await Channels(ctx, hub).create(
        LOCAL, parent, "fake", {"token": token, "account": merchant, "tier": "verified",
                                **credentials}, "",
    )  # fmt: skip
    ids = [f"u-{n:05d}" for n in range(people)] + [f"bad-{n}" for n in range(bad)]
    items = [
        ContactImport(e, "", "", FollowerState.FOLLOWING, None, False, None, from_us(1))
        for e in ids
    ]
    await ctx.db.write(contacts.merge, merchant, made.id, items, from_us(1))
    broadcasts = Broadcasts(ctx, hub)
    dispatcher = Dispatcher(ctx, hub, settings)
    if start:
        dispatcher.start()
    try:
        yield Shop(
            ctx, broadcasts, Sending(ctx, broadcasts, dispatcher.wake,
                                     cancelled=dispatcher.cancelled), dispatcher, parent,
            f"{parent}/channels/{made.id}", made.id, LEDGERS[token], ids,
        )  # fmt: skip
    finally:
        await dispatcher.stop()
        # A test that ends mid-send (failing) leaves no work open in the shared database for
        # the dispatchers of the tests after it: they would take this channel's batches too.
        await ctx.db.write(_close_open_batches, made.id)


def _close_open_batches(conn: Connection, channel: str | None = None) -> None:
    """Close the channel's open batches, or with no channel every open batch."""
    conn.execute(
        text(
            "UPDATE batches SET state = 1, lease_owner = ''"
            " WHERE (CAST(:ch AS VARCHAR) IS NULL OR channel_id = :ch) AND state <> 1"
        ),
        {"ch": channel},
    )


@pytest.fixture
async def shop(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> AsyncIterator[Shop]:
    async for s in _shop(ctx, hub, merchant, 230):
        yield s


def _exactly_once(shop: Shop, people: list[str] | None = None) -> None:
    expected = people if people is not None else shop.people
    assert dict(shop.ledger.received) == dict.fromkeys(expected, 1)


async def test_every_recipient_once_through_errors_and_lost_answers(shop: Shop) -> None:
    shop.ledger.script[:] = ["fail", "lost", "rate", "", "lost"]
    name = await shop.draft()
    sending = await shop.sending.send(LOCAL, name, "")
    assert sending.state is BroadcastState.SENDING
    assert sending.counters.total == 230 and sending.send_estimate is not None
    done = await shop.finished(name)
    assert done.state is BroadcastState.SENT and done.complete_time is not None
    assert (done.counters.sent, done.counters.failed) == (230, 0)
    _exactly_once(shop)
    # Each scripted answer cost its batch one more attempt, always with the batch's key (which
    # batch met which answer depends on timing); lost answers were answered "already accepted".
    assert len(shop.ledger.keys_seen) == 5  # 230 recipients in batches of 50
    assert sum(shop.ledger.keys_seen.values()) == 5 + 4
    found = await shop.ctx.db.read(events.after, shop.parent.split("/")[1], START, 1000)
    mine = [e for e in found if e.broadcast == done.id]
    kinds = Counter(e.kind for e in mine)
    # A message each, and each conversation created, between its sending and its sent events.
    assert kinds == {
        EventKind.BROADCAST_MESSAGE: 230,
        EventKind.CONVERSATION_CREATED: 230,
        EventKind.BROADCAST_SENDING: 1,
        EventKind.BROADCAST_SENT: 1,
    }
    assert (mine[0].kind, mine[-1].kind) == (EventKind.BROADCAST_SENDING, EventKind.BROADCAST_SENT)
    assert mine[-1].counters == done.counters


async def test_one_invalid_recipient_fails_alone(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 49, bad=1):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        done = await shop.finished(name)
        assert done.state is BroadcastState.SENT
        assert (done.counters.sent, done.counters.failed) == (49, 1)
        _exactly_once(shop, shop.people[:49])
        _, failed, _ = await shop.sending.deliveries(LOCAL, name, 10, "", DeliveryOutcome.FAILED)
        assert [(d.external_id, d.reason) for d in failed] == [("bad-0", "INVALID_RECIPIENT")]


async def test_quota_refused_at_send(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> None:
    async for shop in _shop(ctx, hub, merchant, 120, quota="100"):
        name = await shop.draft()
        with pytest.raises(FailedPrecondition) as e:
            await shop.sending.send(LOCAL, name, "")
        assert e.value.reason == "QUOTA_EXCEEDED" and e.value.quota
        assert e.value.metadata == {"recipients": "120", "quota_remaining": "100"}
        assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.DRAFT
        assert not shop.ledger.received


async def test_quota_running_out_mid_send_fails_with_resendable_recipients(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, quota="300"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        shop.ledger.used = 180  # someone else used the account meanwhile: 120 left
        done = await shop.finished(name)
        assert done.state is BroadcastState.FAILED
        assert done.failure_reason == "QUOTA_EXHAUSTED"
        got = sum(shop.ledger.received.values())
        assert got == done.counters.sent and 0 < got <= 120 and done.counters.failed == 0
        assert max(shop.ledger.received.values()) == 1
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {DeliveryOutcome.SENT: got, DeliveryOutcome.NOT_SENT_QUOTA: 230 - got}
        # The unreached recipients can be sent again, as a new broadcast.
        resend = await shop.broadcasts.copy(LOCAL, name, "", unsent_only=True)
        assert resend.resend_of == done.id
        resend_name = f"{shop.parent}/broadcasts/{resend.id}"
        estimate = await shop.broadcasts.estimate(
            LOCAL, shop.parent, resend_name, "", None, (), False
        )
        assert estimate.expected_recipients == 230 - got
        shop.ledger.used = 0
        await shop.sending.send(LOCAL, resend_name, "")
        again = await shop.finished(resend_name)
        assert (again.state, again.counters.total, again.counters.sent) == (
            BroadcastState.SENT, 230 - got, 230 - got,
        )  # fmt: skip
        _exactly_once(shop)


async def test_cancel_stops_new_batches_with_exact_counters(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    slow = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2, ahead=2)
    async for shop in _shop(ctx, hub, merchant, 1000, settings=slow, send_delay_ms="50"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await asyncio.sleep(0.15)
        cancelled = await shop.sending.cancel(LOCAL, name)
        assert cancelled.state is BroadcastState.CANCELLED
        done = await shop.finished(name)
        assert done.state is BroadcastState.CANCELLED
        got = sum(shop.ledger.received.values())
        assert 0 < got < 1000 and done.counters.sent == got
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {
            DeliveryOutcome.SENT: got,
            DeliveryOutcome.NOT_SENT_CANCELLED: 1000 - got,
        }
        with pytest.raises(FailedPrecondition) as e:
            await shop.sending.cancel(LOCAL, name)
        assert e.value.reason == "BROADCAST_NOT_SENDING"


async def test_a_cancel_keeps_the_batches_claimed_ahead_from_going(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A channel claims batches ahead of its sends in flight (here every one of them at once);
    cancelled in this process, those never sent stay unsent (NOT_SENT_CANCELLED), as the
    batches not yet claimed do. (They had gone: the whole broadcast was delivered.)"""
    slow = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2)
    assert slow.ahead >= 20  # all 20 batches claimed at the first claim
    async for shop in _shop(ctx, hub, merchant, 1000, settings=slow, send_delay_ms="50"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await asyncio.sleep(0.15)
        assert (await shop.sending.cancel(LOCAL, name)).state is BroadcastState.CANCELLED
        done = await shop.finished(name)
        got = sum(shop.ledger.received.values())
        assert 0 < got <= 500 and done.counters.sent == got
        assert await shop.outcomes(done.id) == {
            DeliveryOutcome.SENT: got,
            DeliveryOutcome.NOT_SENT_CANCELLED: 1000 - got,
        }
        _exactly_once(shop, [p for p in shop.people if shop.ledger.received[p]])


async def test_a_cancel_on_another_replica_keeps_the_batches_claimed_here_from_going(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """The cancel reaches a replica that is not dispatching the channel: the one that is hears
    of it (a PostgreSQL notification) and its claimed batches that never went do not go."""
    async for shop, elsewhere, name in _sent_beside_another_replica(ctx, hub, merchant, "50"):
        await asyncio.sleep(0.5)  # the dispatcher's listener is connected; 34 batches claimed
        assert (await elsewhere.cancel(LOCAL, name)).state is BroadcastState.CANCELLED
        at_cancel = sum(shop.ledger.received.values())
        got = await _ended_cancelled(shop, name, 3000)
        assert got - at_cancel <= 50 * _TWO_IN_FLIGHT.in_flight  # those already with the channel


async def _sent_until(shop: Shop, title: str, sent: int) -> str:
    """A broadcast to everyone sent, once `sent` of its recipients were recorded sent."""
    name = await shop.draft(title)
    await shop.sending.send(LOCAL, name, "")
    async with asyncio.timeout(30):
        while True:
            if (await shop.broadcasts.get(LOCAL, name)).counters.sent >= sent:
                return name
            await asyncio.sleep(0.01)


_TWO_IN_FLIGHT = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2)


async def _sent_beside_another_replica(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, send_delay_ms: str
) -> AsyncIterator[tuple[Shop, Sending, str]]:
    """PostgreSQL: a shop of 3,000 people whose channel has two batches in flight at most, a
    broadcast to them sent, and the Sending of another replica (it tells no dispatcher here)."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("several replicas share PostgreSQL only")
    async for shop in _shop(
        ctx, hub, merchant, 3000, settings=_TWO_IN_FLIGHT, send_delay_ms=send_delay_ms
    ):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        yield shop, Sending(ctx, shop.broadcasts, lambda _channel: None), name


async def _ended_cancelled(shop: Shop, name: str, people: int) -> int:
    """How many of its `people` recipients the cancelled broadcast `name` reached, once it
    ended: those its counters say, the others NOT_SENT_CANCELLED."""
    done = await shop.finished(name)
    got = sum(shop.ledger.received.values())
    assert 0 < got < people and done.counters.sent == got
    assert await shop.outcomes(done.id) == {
        DeliveryOutcome.SENT: got,
        DeliveryOutcome.NOT_SENT_CANCELLED: people - got,
    }
    return got


def _drop_listeners(conn: Connection) -> list[int]:
    """PostgreSQL: end the connections of this database that LISTEN (as a network fault
    would); their process ids."""
    found = conn.execute(
        text(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            " AND pid <> pg_backend_pid()"
        )
    )
    return [int(pid) for pid, _ in found]


def _alive(conn: Connection, pids: list[int]) -> bool:
    found = conn.execute(
        text("SELECT COUNT(*) FROM pg_stat_activity WHERE pid IN :p").bindparams(
            bindparam("p", expanding=True)
        ),
        {"p": pids},
    )
    return bool(found.scalar_one())


async def test_a_cancel_missed_while_the_listener_was_away_is_read_when_it_comes_back(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """The replica dispatching the channel has its listening connection down when another
    cancels the broadcast, and so never gets the notification: once connected again it reads
    which of the broadcasts it holds claimed batches of were cancelled, and those batches that
    never went do not go. (They had gone: up to 64 batches after the cancel.)"""
    async for shop, elsewhere, name in _sent_beside_another_replica(ctx, hub, merchant, "200"):
        await asyncio.sleep(0.3)  # the dispatcher's listener is connected; 34 batches claimed
        dropped = await ctx.db.write(_drop_listeners)
        assert dropped
        async with asyncio.timeout(5):
            while True:
                if not await ctx.db.read(_alive, dropped):
                    break
                await asyncio.sleep(0.01)
        assert (await elsewhere.cancel(LOCAL, name)).state is BroadcastState.CANCELLED
        at_cancel = sum(shop.ledger.received.values())
        got = await _ended_cancelled(shop, name, 3000)
        # Those with the channel, and those sent until the listener is back (half a second
        # later, ten batches a second): 7 batches, against the 32 claimed ahead.
        assert got - at_cancel <= 50 * 16, (at_cancel, got)


async def test_a_small_broadcast_is_not_stuck_behind_a_big_one_on_its_channel(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """The channel's broadcasts take turns by batch number: one sent while another is half-way
    starts at once instead of waiting for the other's remaining batches."""
    slow = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2, ahead=2)
    async for shop in _shop(ctx, hub, merchant, 5000, settings=slow, send_delay_ms="20"):
        recent = [
            ContactImport(f"recent-{n}", "", "", FollowerState.FOLLOWING, ctx.now(), False,
                          None, ctx.now())
            for n in range(10)
        ]  # fmt: skip
        await ctx.db.write(contacts.merge, shop.parent.split("/")[1], shop.channel_id, recent,
                           ctx.now())  # fmt: skip
        big = await _sent_until(shop, "Everyone", 500)
        draft = DraftInput(
            "Regulars", shop.channel, InteractionWindow.LAST_24_HOURS, (), (TextMessage("hi"),)
        )
        made = await shop.broadcasts.create(LOCAL, shop.parent, draft, "")
        small = f"{shop.parent}/broadcasts/{made.id}"
        await shop.sending.send(LOCAL, small, "")
        # (Counted once the Send returns: how long the Send itself takes is no part of the rule.)
        at_send = len(shop.ledger.accepted_keys)
        done = await shop.finished(small)
        meanwhile = await shop.broadcasts.get(LOCAL, big)
        assert done.state is BroadcastState.SENT and done.counters.sent == 10
        assert meanwhile.state is BroadcastState.SENDING
        # It went after the big one's batches already claimed (in flight and claimed ahead, and
        # those of a claim made while the Send committed), not after its remaining ~90. Counted
        # in the order the channel accepted the batches, not by the clock: on a loaded machine
        # the big one's batches kept going while the small one's outcome was recorded.
        order = list(shop.ledger.accepted_keys)
        small_keys = await ctx.db.read(_batch_keys, made.id)
        first_small = min(i for i, key in enumerate(order) if key in small_keys)
        claimed = slow.in_flight + slow.ahead
        assert first_small - at_send <= 2 * claimed, (at_send, first_small)
        finished = await shop.finished(big)
        assert finished.counters.sent == 5010
        assert max(shop.ledger.received.values()) == 2  # the regulars got both


async def test_a_channel_with_every_batch_claimed_claims_again_when_a_send_comes(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a claim finds fewer batches than it asked for, the batches ending do not claim
    again, each to find nothing (thirty-two channels of 50 batches had made 930 claims for
    their 1,600 batches, each a write transaction); a Send on the channel claims at once."""
    settings = Settings(lease_seconds=1.0, poll_seconds=10.0, in_flight=2)
    assert settings.ahead >= 20  # all 20 batches claimed at the first claim
    claims = 0
    real = dispatch.claim

    def counted(*args: Any, **kwargs: Any) -> list[dispatch.ClaimedBatch]:
        nonlocal claims
        claims += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch, "claim", counted)
    async for shop in _shop(ctx, hub, merchant, 1000, settings=settings, send_delay_ms="150"):
        big = await _sent_until(shop, "Everyone", 200)
        assert claims <= 2, claims  # not one per batch ended
        again = await shop.draft("Again")
        await shop.sending.send(LOCAL, again, "")
        async with asyncio.timeout(1):  # a tenth of the poll
            while True:
                if await ctx.db.read(_open_batches, again.rsplit("/", 1)[1], leased=True):
                    break
                await asyncio.sleep(0.01)
        assert (await shop.broadcasts.get(LOCAL, big)).state is BroadcastState.SENDING
        for name in (big, again):
            done = await shop.finished(name)
            assert (done.state, done.counters.sent) == (BroadcastState.SENT, 1000)
        assert claims <= 8, claims  # against one per batch ended: 40
        assert max(shop.ledger.received.values()) == 2


async def test_a_channels_claiming_wakes_when_it_has_room_to_claim_not_at_every_batch(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel's dispatch claims when a quarter of its bound in flight is free; the batches
    freeing their slots wake it only then, not one by one (each wake-up a turn of its loop, a
    timer and a task switch: one per request, to claim at one in eight)."""
    settings = Settings(
        lease_seconds=1.0, poll_seconds=7.0, in_flight=16, least_in_flight=16, ahead=0
    )
    turns = 0
    real = engine.wait_or_wake

    async def counted(event: asyncio.Event, seconds: float) -> None:
        nonlocal turns
        if seconds == settings.poll_seconds:  # the claiming loop's wait
            turns += 1
        await real(event, seconds)

    monkeypatch.setattr(engine, "wait_or_wake", counted)
    async for shop in _shop(ctx, hub, merchant, 4000, settings=settings, send_delay_ms="20"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        done = await shop.finished(name)
        assert (done.state, done.counters.sent) == (BroadcastState.SENT, 4000)
        _exactly_once(shop)
        # 80 batches, claimed 4 at a time once the first 16 went: about 20 turns; woken at
        # every batch freed (answered, then recorded), it had taken about 160.
        assert turns <= 40, turns


class _HeldRecorder(Recorder):
    """The process's group commit, with accepted batches held back until `open` is set: a
    recorder falling behind."""

    def __init__(self, db: Database, open: asyncio.Event) -> None:
        super().__init__(db)
        self._open = open

    async def write_together(self, fn: Any, item: Any, *, key: str = "") -> Any:
        await self._open.wait()
        return await super().write_together(fn, item, key=key)


async def test_answered_batches_waiting_for_their_record_do_not_hold_the_next_sends(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A channel's sends on the wire are bounded (`in_flight`), and so are its batches not yet
    recorded (`unrecorded`): a batch the channel took leaves the wire while it waits for its
    group commit, and the next goes meanwhile. (A slot held until the record had kept eight
    channels at half their ceiling while the recorder caught up.)"""
    held = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2, unrecorded=6)
    async for shop in _shop(ctx, hub, merchant, 1000, settings=held, start=False):
        open = asyncio.Event()
        shop.dispatcher._record = _HeldRecorder(ctx.db, open)
        shop.dispatcher.start()
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        async with asyncio.timeout(10):
            while True:
                if shop.ledger.attempts >= held.unrecorded:
                    break
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # no more go while six wait for their record
        assert shop.ledger.attempts == held.unrecorded
        assert sum(shop.ledger.received.values()) == 50 * held.unrecorded
        assert (await shop.broadcasts.get(LOCAL, name)).counters.sent == 0
        open.set()
        done = await shop.finished(name)
        assert (done.state, done.counters.sent) == (BroadcastState.SENT, 1000)
        _exactly_once(shop)


async def test_batches_are_claimed_ahead_of_the_sends_on_the_wire(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A channel claims `ahead` batches more than it has sends (so that the next go while a
    claim waits its turn at the database's writer: 50-300 ms at eight channels' ceilings),
    and still never has more than `in_flight` requests with the channel at once."""
    settings = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=2, ahead=3)
    async for shop in _shop(ctx, hub, merchant, 1000, settings=settings, send_delay_ms="100"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        broadcast = name.rsplit("/", 1)[1]
        most = 0
        async with asyncio.timeout(10):
            while most < settings.in_flight + settings.ahead:
                most = max(most, await ctx.db.read(_open_batches, broadcast, leased=True))
                await asyncio.sleep(0.01)
        assert most == settings.in_flight + settings.ahead
        done = await shop.finished(name)
        assert (done.state, done.counters.sent) == (BroadcastState.SENT, 1000)
        assert shop.ledger.most_sending == settings.in_flight
        _exactly_once(shop)


async def test_a_run_still_ending_does_not_hold_a_new_channel_back(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A process's share is of the channels with work: a run whose channel has nothing left
    to send, still ending (its last writes waiting for their turn), does not count in it. A
    channel sent meanwhile starts at once, not after a lease term (thirty-two merchants sent
    at once: the last channel had waited a second behind runs that were ending)."""
    slow = Settings(lease_seconds=30.0, poll_seconds=0.02, safety_poll_seconds=0.05)
    async for shop in _shop(ctx, hub, merchant, 230, settings=slow):

        async def never() -> None:
            await asyncio.Event().wait()

        ending = asyncio.create_task(never())
        shop.dispatcher._channels["a-channel-with-nothing-left"] = ending
        try:
            name = await shop.draft()
            await shop.sending.send(LOCAL, name, "")
            async with asyncio.timeout(5):  # a sixth of the lease term
                while True:
                    if (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.SENT:
                        break
                    await asyncio.sleep(0.02)
            done = await shop.finished(name)
            assert (done.state, done.counters.sent) == (BroadcastState.SENT, 230)
            _exactly_once(shop)
        finally:
            del shop.dispatcher._channels["a-channel-with-nothing-left"]
            ending.cancel()


def _holders(conn: Connection) -> dict[str, str]:
    rows = conn.execute(text("SELECT channel_id, owner FROM channel_leases")).all()
    return {str(channel): str(owner).split(":")[0] for channel, owner in rows}


def _dispatchers(conn: Connection) -> int:
    return int(conn.execute(text("SELECT COUNT(*) FROM dispatchers")).scalar_one())


async def test_two_replicas_share_eight_channels_and_one_takes_over_the_others(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Each dispatcher takes its share of the channels with work (neither all of them); when
    one stops, the other takes its channels over and every recipient gets the broadcast once.
    (The second learns of the Sends on its poll here; across processes on PostgreSQL, a Send
    wakes every replica at once: tests/integration/test_idle_dispatcher.py.)"""
    slow = Settings(lease_seconds=1.0, poll_seconds=0.02, safety_poll_seconds=0.05, in_flight=2)
    made = [_shop(ctx, hub, f"{merchant}-{n}", 1000, settings=slow, start=False,
                  send_delay_ms="60") for n in range(8)]  # fmt: skip
    shops = [await m.__anext__() for m in made]
    # Batches earlier tests left open in the shared database (a snapshot taken and never
    # sent) are channels with work too, and each dispatcher's share counts them: closed first,
    # so the two share these eight.
    await ctx.db.write(_close_open_batches)
    first, second = Dispatcher(ctx, hub, slow), Dispatcher(ctx, hub, slow)
    try:
        first.start()
        second.start()
        async with asyncio.timeout(10):
            while True:
                if await ctx.db.read(_dispatchers) >= 2:
                    break
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # start-up settles
        sending = Sending(ctx, shops[0].broadcasts, first.wake)  # the Sends reach one replica
        names = [await shop.draft() for shop in shops]
        for name in names:
            await sending.send(LOCAL, name, "")
        most_held, seen = 0, set()
        for _ in range(50):  # half a second of the send (it takes a few)
            leases = await ctx.db.read(_holders)
            held = Counter(leases[s.channel_id] for s in shops if s.channel_id in leases)
            seen |= set(held)
            most_held = max(most_held, *held.values(), 0)
            await asyncio.sleep(0.01)
        # (Other dispatchers on the same database, such as a test server's, may take some.)
        assert {first.owner, second.owner} <= seen
        assert most_held <= 5, most_held  # its share is 4; a hand-over takes a moment
        # The first stops (its process ends) mid-send: the second takes its channels over.
        await first.stop()
        for shop, name in zip(shops, names, strict=True):
            done = await shop.finished(name)
            assert (done.state, done.counters.sent) == (BroadcastState.SENT, 1000)
            _exactly_once(shop)
    finally:
        await first.stop()
        await second.stop()
        for m in made:
            await m.aclose()


async def test_a_send_past_the_prepared_budget_numbers_its_recipients_itself(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a reader numbers a Send's recipients before the Send's transaction
    (store.snapshot `prepare`), while the Sends holding theirs stay within
    PREPARED_RECIPIENTS and the Send itself within PREPARED_PER_SEND; past either, the
    transaction numbers them itself. Either way every recipient gets the broadcast once."""
    if not snapshot.prepares(shop.ctx.db.dialect):
        pytest.skip("PostgreSQL numbers a Send's recipients in its transaction")
    prepared: list[str] = []
    real = snapshot.prepare

    def counted(conn: Connection, **kwargs: Any) -> snapshot.Prepared:
        prepared.append(kwargs["channel"])
        return real(conn, **kwargs)

    monkeypatch.setattr(snapshot, "prepare", counted)
    first = await shop.draft()
    await shop.sending.send(LOCAL, first, "")
    monkeypatch.setattr(sending, "PREPARED_RECIPIENTS", len(shop.people) - 1)
    second = await shop.draft()
    await shop.sending.send(LOCAL, second, "")
    monkeypatch.undo()
    monkeypatch.setattr(snapshot, "prepare", counted)
    monkeypatch.setattr(sending, "PREPARED_PER_SEND", len(shop.people) - 1)
    third = await shop.draft()
    await shop.sending.send(LOCAL, third, "")
    assert prepared == [shop.channel_id]
    for name in (first, second, third):
        done = await shop.finished(name)
        assert (done.counters.total, done.counters.sent) == (230, 230)
    assert dict(shop.ledger.received) == dict.fromkeys(shop.people, 3)


async def test_concurrent_sends_start_one_dispatch(shop: Shop) -> None:
    name = await shop.draft()
    same = await asyncio.gather(*(shop.sending.send(LOCAL, name, "req-1") for _ in range(10)))
    assert {b.id for b in same} == {same[0].id}
    # Each returns the one dispatch (which may have finished by the time a repeat reads it).
    assert {b.state for b in same} <= {BroadcastState.SENDING, BroadcastState.SENT}
    assert {b.counters.total for b in same} == {230}
    other = await shop.draft("Other")
    results = await asyncio.gather(
        *(shop.sending.send(LOCAL, other, "") for _ in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert len(refused) == 9 and {r.reason for r in refused} == {"BROADCAST_NOT_DRAFT"}
    await shop.finished(name)
    await shop.finished(other)
    assert dict(shop.ledger.received) == dict.fromkeys(shop.people, 2)  # two broadcasts


async def test_a_dead_dispatchers_batches_are_taken_over_with_their_keys(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        # A process took the channel (before the send, so that no other dispatcher on the same
        # database, such as a test server's, takes it first), claimed two batches, sent the first
        # (the channel accepted it), and died.
        now = ctx.now()
        assert await ctx.db.write(
            dispatch.acquire_channel, shop.channel_id, "dead", now + timedelta(seconds=600), now
        )
        sent = await shop.sending.send(LOCAL, name, "")
        claimed = await _claim(ctx, shop.channel_id, "dead", timedelta(seconds=600), 2)
        first = claimed[0]
        shop.ledger.accepted_keys[first.idempotency_key] = "earlier"
        shop.ledger.received.update(first.recipients)
        await ctx.db.write(dispatch.release_channel, shop.channel_id, "dead")  # as if expired
        shop.dispatcher.start()
        done = await shop.finished(name)
        assert done.id == sent.id and done.state is BroadcastState.SENT
        assert done.counters.sent == 230
        _exactly_once(shop)


async def test_a_batch_past_its_key_window_is_never_retried_blindly(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        # Its first attempt was two hours ago; the fake channel keeps keys for one.
        claimed = await _claimed_by_the_dead(ctx, shop.channel_id, timedelta(hours=2))
        shop.dispatcher.start()
        done = await shop.finished(name)
        assert (done.state, done.counters.sent, done.counters.failed) == (
            BroadcastState.SENT, 180, 50,
        )  # fmt: skip
        outcomes = await shop.outcomes(done.id)
        assert outcomes == {DeliveryOutcome.SENT: 180, DeliveryOutcome.UNKNOWN: 50}
        _, unknown, _ = await shop.sending.deliveries(LOCAL, name, 100, "", DeliveryOutcome.UNKNOWN)
        assert {d.reason for d in unknown} == {"KEY_EXPIRED"}
        assert claimed.idempotency_key not in shop.ledger.keys_seen


async def test_a_rejected_batch_stops_the_broadcast(shop: Shop) -> None:
    shop.ledger.script[:] = ["reject"]
    shop.dispatcher.settings = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=1)
    name = await shop.draft()
    await shop.sending.send(LOCAL, name, "")
    done = await shop.finished(name)
    assert (done.state, done.failure_reason) == (BroadcastState.FAILED, "CHANNEL_REJECTED")
    outcomes = await shop.outcomes(done.id)
    assert outcomes[DeliveryOutcome.FAILED] == 50 == done.counters.failed
    assert sum(outcomes.values()) == 230 and done.counters.sent == outcomes.get(
        DeliveryOutcome.SENT, 0
    )


async def test_deliveries_page_in_order_and_filter(shop: Shop) -> None:
    name = await shop.draft()
    await shop.sending.send(LOCAL, name, "")
    await shop.finished(name)
    seen = [external for external, _ in await _listed(shop, name, None, page_size=100)]
    assert seen == sorted(shop.people)
    _, none_failed, _ = await shop.sending.deliveries(LOCAL, name, 100, "", DeliveryOutcome.FAILED)
    assert none_failed == []


async def _listed(
    shop: Shop, name: str, outcome: DeliveryOutcome | None, *, page_size: int = 7
) -> list[tuple[str, DeliveryOutcome]]:
    """Every delivery of the broadcast with `outcome` (None: all), page after page."""
    seen, token = [], ""
    while True:
        _, page, token = await shop.sending.deliveries(LOCAL, name, page_size, token, outcome)
        seen += [(d.external_id, d.outcome) for d in page]
        if not token:
            return seen


async def test_leases_of_many_channels_are_taken_in_one_call(ctx: ServiceContext) -> None:
    """The channels whose lease is free, lapsed or already the owner's are taken; one another
    process holds is not."""
    free, held, lapsed, mine = (new_id() for _ in range(4))
    now = ctx.now()
    later, past = now + timedelta(seconds=60), now - timedelta(seconds=1)
    await ctx.db.write(dispatch.acquire_channel, held, "other", later, now)
    await ctx.db.write(dispatch.acquire_channel, lapsed, "other", past, past)
    await ctx.db.write(dispatch.acquire_channel, mine, "me:2", later, now)
    wanted = [(free, "me:1"), (held, "me:2"), (lapsed, "me:3"), (mine, "me:2")]
    taken = await ctx.db.write(dispatch.acquire_channels, wanted, later, now)
    assert taken == [free, lapsed, mine]
    owners = await ctx.db.read(_lease_owners, [free, held, lapsed, mine])
    assert owners == {free: "me:1", held: "other", lapsed: "me:3", mine: "me:2"}


async def test_leases_of_many_channels_are_renewed_in_one_call(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Each lease still the owner's, of a channel still connected, runs to the new expiry; one
    another process holds, or of a deleted channel, is not renewed."""
    channels = Channels(ctx, hub)
    made = []
    for n in range(4):
        settings = {"token": uuid.uuid4().hex, "account": f"{merchant}-{n}", "tier": "verified"}
        made.append(await channels.create(LOCAL, f"merchants/{merchant}", "fake", settings, ""))
    mine, also_mine, theirs, deleted = made_ids = [c.id for c in made]
    now = ctx.now()
    soon, later = now + timedelta(seconds=5), now + timedelta(seconds=60)
    taken = [(mine, "me:1"), (also_mine, "me:2"), (theirs, "other"), (deleted, "me:4")]
    assert await ctx.db.write(dispatch.acquire_channels, taken, soon, now) == made_ids
    await channels.delete(LOCAL, f"merchants/{merchant}/channels/{deleted}")
    held = [(mine, "me:1"), (also_mine, "me:2"), (theirs, "me:3"), (deleted, "me:4")]
    assert await ctx.db.write(dispatch.renew_channels, held, later) == {mine, also_mine}
    assert await ctx.db.read(_lease_expiries, [mine, also_mine, theirs]) == {
        mine: to_us(later), also_mine: to_us(later), theirs: to_us(soon),
    }  # fmt: skip
    assert await ctx.db.write(dispatch.renew_channels, [], later) == set()


def _lease_expiries(conn: Connection, channels: list[str]) -> dict[str, int]:
    found = conn.execute(
        text("SELECT channel_id, expiry FROM channel_leases WHERE channel_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        ),
        {"ids": channels},
    )
    return {channel: expiry for channel, expiry in found}


def _lease_owners(conn: Connection, channels: list[str]) -> dict[str, str]:
    found = conn.execute(
        text("SELECT channel_id, owner FROM channel_leases WHERE channel_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        ),
        {"ids": channels},
    )
    return dict(found.tuples().all())


async def test_a_batch_taken_over_leaves_out_the_recipients_refused_one_by_one(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A batch claimed again (its holder died after the channel refused some recipients) comes
    with the rest of its recipients, in seq order; the next batch comes whole."""
    async for shop in _shop(ctx, hub, merchant, 120, start=False):  # batches of 50, 50, 20
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        first = await _claimed_by_the_dead(ctx, shop.channel_id)
        assert first.recipients == tuple(sorted(shop.people)[:50])
        refused = [first.recipients[3], first.recipients[49]]
        await ctx.db.write(dispatch.record_invalid, first, refused, "INVALID_RECIPIENT", ctx.now())
        again, second = await _claim(ctx, shop.channel_id, "next", timedelta(seconds=60), 2)
        assert (again.batch, second.batch) == (first.batch, first.batch + 1)
        assert again.recipients == tuple(r for r in first.recipients if r not in refused)
        assert second.recipients == tuple(sorted(shop.people)[50:100])


async def test_deliveries_read_as_their_batch(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Recipients sent with their batch read SENT once it is done and PENDING while it is open,
    unfiltered and filtered, page after page; those resolved one by one keep their outcome."""
    async for shop in _shop(ctx, hub, merchant, 120, start=False):  # batches of 50, 50, 20
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        first, _ = await _claim(ctx, shop.channel_id, "test", timedelta(seconds=1000), 2)
        now = ctx.now()
        refused = first.recipients[3]
        await ctx.db.write(dispatch.record_invalid, first, [refused], "INVALID_RECIPIENT", now)
        # batch 1 is still in flight
        await ctx.db.write(dispatch.record_sent, [(first, now, dispatch.Acceptance())])

        people = sorted(shop.people)
        sent = [(p, DeliveryOutcome.SENT) for p in people[:50] if p != refused]
        pending = [(p, DeliveryOutcome.PENDING) for p in people[50:]]
        assert await _listed(shop, name, DeliveryOutcome.SENT) == sent
        assert await _listed(shop, name, DeliveryOutcome.PENDING) == pending
        assert await _listed(shop, name, DeliveryOutcome.FAILED) == [
            (refused, DeliveryOutcome.FAILED)
        ]
        assert await _listed(shop, name, None) == sorted(
            [*sent, (refused, DeliveryOutcome.FAILED), *pending]
        )
        broadcast = await shop.broadcasts.get(LOCAL, name)
        assert (broadcast.counters.sent, broadcast.counters.failed) == (49, 1)


async def test_who_had_a_conversation_is_judged_when_the_recipients_are_fixed(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A recipient whose contact had a conversation at Send gets no conversation-created event;
    one who starts one between Send and delivery still gets it (their delivery is the
    broadcast's, fixed at Send); the others get theirs, each once."""
    async for shop in _shop(ctx, hub, merchant, 60, start=False):  # batches of 50 and 10
        people = sorted(shop.people)
        had, later = people[:3], people[10:12]

        def chatted(conn: Connection, channel: str, who: list[str]) -> None:
            conn.execute(
                text(
                    "UPDATE contacts SET has_conversation = true WHERE channel_id = :ch"
                    " AND external_id IN :who"
                ).bindparams(bindparam("who", expanding=True)),
                {"ch": channel, "who": who},
            )

        await ctx.db.write(chatted, shop.channel_id, had)
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await ctx.db.write(chatted, shop.channel_id, later)
        claimed = await _claim(ctx, shop.channel_id, "test", timedelta(seconds=1000), 2)
        now = ctx.now()
        sent = await ctx.db.write(
            dispatch.record_sent, [(c, now, dispatch.Acceptance()) for c in claimed]
        )
        assert sent == [50, 10]
        created, messages = await _reached(ctx, merchant, shop.channel_id)
        assert Counter(p for p, _ in created) == Counter(p for p in people if p not in had)
        assert messages == Counter(people)


async def _reached(
    ctx: ServiceContext, merchant: str, channel_id: str
) -> tuple[list[tuple[str, str]], Counter[str]]:
    """The merchant's Message Center events so far: (external id, broadcast) of each
    conversation-created event, and how many broadcast messages each external id got."""
    found = await ctx.db.read(events.after, merchant, START, 1000)
    by_id = await ctx.db.read(
        contacts.list_page, merchant, channel_id, ContactFilter(), Page(1000, None)
    )
    external = {c.id: c.external_id for c in by_id}
    created = [
        (external[e.contact], e.broadcast)
        for e in found
        if e.kind is EventKind.CONVERSATION_CREATED
    ]
    messages = Counter(external[e.contact] for e in found if e.kind is EventKind.BROADCAST_MESSAGE)
    return created, messages


async def test_two_broadcasts_reaching_a_contact_create_its_conversation_once(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Two broadcasts of a channel are sent before either is delivered, to the same contacts,
    none of whom had a conversation: whichever delivery reaches a contact first creates its
    conversation, and the other's delivery is recorded all the same, without creating it
    again; so is a third broadcast, sent after. (On PostgreSQL the first write of a range does
    not look for such conversations: the key refuses it, and the range is written again with
    the look-up.)"""
    async for shop in _shop(ctx, hub, merchant, 60, start=False):  # batches of 50 and 10
        people = sorted(shop.people)
        first, second = await shop.draft(), await shop.draft()
        for name in (first, second):
            await shop.sending.send(LOCAL, name, "")
        claimed = await _claim(ctx, shop.channel_id, "test", timedelta(seconds=1000), 4)
        by = {(c.broadcast, c.batch): c for c in claimed}
        ids = [BroadcastName.parse(n, "name").broadcast for n in (first, second)]
        a0, a1, b0, b1 = (by[(b, n)] for b in ids for n in (0, 1))
        now = ctx.now()
        recorded = []
        # The second broadcast's first 50 first; then the first broadcast's 60, in one group
        # (its 50 have conversations now, its last 10 not); then the second's last 10.
        for group in ([b0], [a0, a1], [b1]):
            recorded += await ctx.db.write(
                dispatch.record_sent, [(c, now, dispatch.Acceptance()) for c in group]
            )
        assert recorded == [50, 50, 10, 10]
        third = await shop.draft()
        await shop.sending.send(LOCAL, third, "")
        late = await _claim(ctx, shop.channel_id, "test", timedelta(seconds=1000), 2)
        sent = await ctx.db.write(
            dispatch.record_sent, [(c, now, dispatch.Acceptance()) for c in late]
        )
        assert sent == [50, 10]

        created, messages = await _reached(ctx, merchant, shop.channel_id)
        assert Counter(p for p, _ in created) == Counter(people)  # each once
        assert dict(created) == {p: ids[1] if i < 50 else ids[0] for i, p in enumerate(people)}
        assert messages == Counter({p: 3 for p in people})
        for name in (first, second, third):
            broadcast = await shop.broadcasts.get(LOCAL, name)
            assert broadcast.counters.sent == 60


async def test_a_group_commit_opens_many_broadcasts_conversations_in_one_savepoint(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """PostgreSQL: the first conversations of several broadcasts recorded in one group commit
    are written without looking for conversation rows in one savepoint, not one per broadcast
    (a commit of 256 outcomes may hold as many broadcasts, and past 64 savepoints a backend's
    transaction slows every other one's snapshots). Each recipient's conversation is still
    created once, by its broadcast."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite writes conversations without savepoints")
    opened = [_shop(ctx, hub, merchant, 20, start=False, account=f"a{i}") for i in range(3)]
    try:
        shops = [await made.__anext__() for made in opened]
        claimed = []
        for shop in shops:
            await shop.sending.send(LOCAL, await shop.draft(), "")
            claimed += await _claim(ctx, shop.channel_id, "test", timedelta(seconds=1000), 1)
        released = []
        for engine in ctx.db.engines():
            event.listen(engine, "release_savepoint", lambda *_: released.append(1))
        now = ctx.now()
        sent = await ctx.db.write(
            dispatch.record_sent, [(c, now, dispatch.Acceptance()) for c in claimed]
        )
        assert sent == [20, 20, 20]
        assert len(released) == 1
        everyone = set()
        for shop in shops:
            page = await ctx.db.read(
                contacts.list_page, merchant, shop.channel_id, ContactFilter(), Page(100, None)
            )
            everyone |= {c.id for c in page}
        found = await ctx.db.read(events.after, merchant, START, 1000)
        for kind in (EventKind.CONVERSATION_CREATED, EventKind.BROADCAST_MESSAGE):
            assert Counter(e.contact for e in found if e.kind is kind) == dict.fromkeys(everyone, 1)
    finally:
        for made in opened:
            await made.aclose()


# -- drain (SIGTERM) ------------------------------------------------------------------------------


def _held(conn: Connection, channel_id: str) -> tuple[list[str], list[str]]:
    """The channel's lease holders, and the owners of its open batches' leases."""
    leases = conn.execute(
        text("SELECT owner FROM channel_leases WHERE channel_id = :c"), {"c": channel_id}
    ).scalars()
    batches = conn.execute(
        text("SELECT lease_owner FROM batches WHERE channel_id = :c AND state <> 1"),
        {"c": channel_id},
    ).scalars()
    return list(leases), [owner for owner in batches if owner]


# A lease that would take 30 s to lapse: a takeover within that is the drain's doing.
DRAIN = Settings(lease_seconds=30.0, poll_seconds=0.02, in_flight=8)


async def _drained_mid_send(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, grace: float, send_delay_ms: int
) -> Counter[int]:
    """How many batches were sent once, twice, …"""
    async for shop in _shop(ctx, hub, merchant, 1000, settings=DRAIN,
                            send_delay_ms=str(send_delay_ms)):  # fmt: skip
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        async with asyncio.timeout(30):
            while True:
                if shop.ledger.attempts:  # requests are with the channel
                    break
                await asyncio.sleep(0.005)
        started = asyncio.get_running_loop().time()
        await shop.dispatcher.stop(grace=grace)
        assert asyncio.get_running_loop().time() - started < grace + 2.0
        assert await ctx.db.read(_held, shop.channel_id) == ([], [])  # nothing left leased
        b = await shop.broadcasts.get(LOCAL, name)
        assert b.state is BroadcastState.SENDING and b.counters.sent < 1000
        # What the channel took was recorded (a cut-off send never reached it).
        assert b.counters.sent == sum(shop.ledger.received.values())
        other = Dispatcher(ctx, hub, DRAIN)  # another replica
        other.start()
        try:
            done = await shop.finished(name)  # well before a lease could lapse
        finally:
            await other.stop()
        assert done.id == sent.id and done.state is BroadcastState.SENT
        assert done.counters.sent == 1000
        _exactly_once(shop)
        return Counter(shop.ledger.keys_seen.values())
    raise AssertionError("no shop")


async def test_a_draining_dispatcher_records_its_sends_and_lets_the_channel_go(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Stopped (SIGTERM) mid-send: it claims nothing more, the sends with the channel are
    answered and recorded, and the channel's lease and the batches it claimed but did not send
    are released at once; another dispatcher takes over without waiting for a lease to lapse,
    and nobody gets the broadcast twice."""
    sends = await _drained_mid_send(ctx, hub, merchant, grace=10.0, send_delay_ms=200)
    assert sends == {1: 1000 // 50}  # each batch once: none was left to be sent again


async def test_sends_past_the_grace_period_are_cut_off_and_taken_over(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Sends still with the channel when the grace period ends are cut off; their batches are
    let go with the rest, and the next holder sends them again with the same keys."""
    sends = await _drained_mid_send(ctx, hub, merchant, grace=0.1, send_delay_ms=3000)
    assert sends[2] >= 1 and sends[1] + sends[2] == 1000 // 50, sends
