"""Scheduled broadcasts with the core alone (the fake channel) on both databases, on a clock the
test moves: a broadcast fires once at its time, whoever races for it; a replica's claim that
lapses is taken over; unschedule, edit, reschedule, cancel; preconditions that fail at its time
end it FAILED with their reason; the schedule window; what deletions do to a scheduled one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broadcaster.channels import Quota
from broadcaster.channels.manager import PluginManager
from broadcaster.dispatch.firing import Firing, FiringSettings
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Broadcast, BroadcastState, RecipientLimit
from broadcaster.domain.deliveries import LIFECYCLE_KINDS, START, EventFilter, EventKind
from broadcaster.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.names import BroadcastName, ChannelName
from broadcaster.domain.scheduling import ScheduleWindow
from broadcaster.services.broadcasts import Broadcasts, DraftInput, ListQuery
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.sending import Sending
from broadcaster.store import events as events_repo
from broadcaster.store import groups as group_repo
from broadcaster.store import schedules
from broadcaster.store.sealing import Sealer
from tests.integration.test_sending import Shop, _exactly_once, _shop

# Each test's clock starts 400 days before the previous test's: what one leaves scheduled (at
# most 180 days after its start) is never due for the next, whose firing sees every merchant's.
_STARTS = itertools.count()


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.start = datetime(2100, 1, 1, tzinfo=UTC) - timedelta(days=400) * next(_STARTS)
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def shop(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, clock: Clock
) -> AsyncIterator[Shop]:
    timed = replace(ctx, clock=clock)
    async for s in _shop(timed, hub, merchant, 120, quota="1000"):
        yield s


def _firing(shop: Shop, sending: Sending | None = None) -> Firing:
    return Firing(shop.ctx, (sending or shop.sending).fire_many, FiringSettings(lease_seconds=30))


async def test_fires_once_at_its_time(shop: Shop, clock: Clock) -> None:
    name = await shop.draft()
    at = clock.start + timedelta(hours=2)
    scheduled = await shop.sending.schedule(LOCAL, name, at, "s-1")
    assert (scheduled.state, scheduled.schedule_time) == (BroadcastState.SCHEDULED, at)
    assert scheduled.send_time is None and scheduled.counters.total == 0
    firing = _firing(shop)
    clock.now = at - timedelta(microseconds=1)
    assert await firing.fire_due() == 0  # not a moment early
    assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.SCHEDULED
    clock.now = at
    assert await firing.fire_due() == 1
    fired = await shop.broadcasts.get(LOCAL, name)
    assert fired.state in (BroadcastState.SENDING, BroadcastState.SENT)
    assert fired.send_time == at and fired.schedule_time == at and fired.counters.total == 120
    done = await shop.finished(name)
    assert done.state is BroadcastState.SENT and done.counters.sent == 120
    _exactly_once(shop)
    clock.now = at + timedelta(hours=1)
    assert await firing.fire_due() == 0  # fired is fired
    assert await shop.ctx.db.read(schedules.next_due, clock.now) is None


async def test_two_replicas_racing_send_once(shop: Shop, clock: Clock) -> None:
    names = [await shop.draft(f"Sale {n}") for n in range(3)]
    at = clock.start + timedelta(minutes=5)
    for name in names:
        await shop.sending.schedule(LOCAL, name, at, "")
    other = Sending(shop.ctx, shop.broadcasts, shop.dispatcher.wake)
    clock.now = at + timedelta(seconds=1)
    # Two firing loops on one database claim at once: each broadcast is claimed by one.
    claimed = await asyncio.gather(_firing(shop).fire_due(), _firing(shop, other).fire_due())
    assert sum(claimed) == 3
    # And two replicas firing one broadcast directly (a claim that lapsed mid-fire): one sends.
    extra = await shop.draft("Raced")
    await shop.sending.schedule(LOCAL, extra, clock.now + timedelta(minutes=2), "")
    clock.now += timedelta(minutes=3)
    b = await shop.broadcasts.get(LOCAL, extra)
    results = await asyncio.gather(
        shop.sending.fire(b.merchant, b.id), other.fire(b.merchant, b.id)
    )
    assert sum(r is not None for r in results) == 1
    for name in [*names, extra]:
        assert (await shop.finished(name)).counters.sent == 120
    assert dict(shop.ledger.received) == dict.fromkeys(shop.people, 4)  # four broadcasts, once each


async def test_a_claim_takes_no_more_than_its_limit(shop: Shop, clock: Clock) -> None:
    """A firing loop claims at most its limit at a time (the rest wait for its next round, or
    for another replica), on PostgreSQL too, where a locking subquery could be run again."""
    names = [await shop.draft(f"Due {n}") for n in range(5)]
    at = clock.start + timedelta(minutes=2)
    for name in names:
        await shop.sending.schedule(LOCAL, name, at, "")
    clock.now = at
    until = clock.now + timedelta(seconds=30)
    first = await shop.ctx.db.write(schedules.claim_due, now=clock.now, lease_until=until, limit=2)
    assert len(first) == 2  # (other tests' broadcasts may be due too: whichever are earliest)
    rest = await shop.ctx.db.write(
        schedules.claim_due, now=clock.now, lease_until=until, limit=1000
    )
    ours = {BroadcastName.parse(n).broadcast for n in names}
    assert ours <= {d.broadcast for d in first + rest}
    assert not {d.broadcast for d in first} & {d.broadcast for d in rest}
    # Claimed and never fired: cancelled, so that no other test's firing loop (the database is
    # shared, and their clocks are later) takes them over once the claims lapse.
    for name in names:
        await shop.sending.cancel(LOCAL, name)


async def test_a_claim_that_lapses_is_taken_over(shop: Shop, clock: Clock) -> None:
    """The replica that claimed it died before firing: another fires it once the claim lapses."""
    name = await shop.draft()
    at = clock.start + timedelta(minutes=2)
    await shop.sending.schedule(LOCAL, name, at, "")
    clock.now = at
    (dead,) = await shop.ctx.db.write(
        schedules.claim_due, now=clock.now, lease_until=clock.now + timedelta(seconds=30), limit=10
    )
    assert dead.schedule_time == at
    firing = _firing(shop)
    assert await firing.fire_due() == 0  # claimed, by the dead
    assert await shop.ctx.db.read(schedules.next_due, clock.now) == at + timedelta(seconds=30)
    clock.now = at + timedelta(seconds=31)
    assert await firing.fire_due() == 1
    assert (await shop.finished(name)).state is BroadcastState.SENT
    _exactly_once(shop)


async def test_a_replica_that_cannot_open_the_channel_leaves_its_broadcasts_to_another(
    shop: Shop, clock: Clock
) -> None:
    """A replica without the channel's plugin (a rolling deploy that adds one, half done) gives
    up its claim at once, so that a replica with it fires the broadcast now rather than a claim
    term later, and does not claim that channel's broadcasts again for a while."""
    registry = PluginManager.load((), []).register_channels()  # no channel type installed
    bare = ChannelHub(registry, Sealer(("k" * 32,)), shop.ctx.db, {})
    lacking = Sending(shop.ctx, Broadcasts(shop.ctx, bare), shop.dispatcher.wake)
    lacking_firing = Firing(
        shop.ctx, lacking.fire_many, FiringSettings(lease_seconds=30), aside=bare.not_openable
    )
    name = await shop.draft()
    at = clock.start + timedelta(minutes=2)
    await shop.sending.schedule(LOCAL, name, at, "")
    clock.now = at
    try:
        assert await lacking_firing.fire_due() == 1  # claimed, and found it cannot open it
        channel_id = ChannelName.parse(shop.channel).channel
        assert bare.not_openable() == {channel_id}
        assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.SCHEDULED
        # The claim is given up: it is due now for every replica, but not for this one.
        assert await shop.ctx.db.read(schedules.next_due, clock.now) == at
        assert await shop.ctx.db.read(schedules.next_due, clock.now, {channel_id}) != at
        assert await lacking_firing.fire_due() == 0
        # A replica that can open it fires it at once, not a claim term later.
        assert await _firing(shop).fire_due() == 1
        assert (await shop.finished(name)).state is BroadcastState.SENT
        _exactly_once(shop)
        # A caller asking that replica about the channel is told to try again (another
        # replica may answer), not INTERNAL.
        with pytest.raises(Unavailable) as e:
            await Broadcasts(shop.ctx, bare).estimate(
                LOCAL, shop.parent, "", shop.channel, InteractionWindow.ALL_CONTACTS, (), True
            )
        assert e.value.reason == "CHANNEL_UNAVAILABLE"
    finally:
        await bare.close()


async def test_unschedule_edit_reschedule_cancel(shop: Shop, clock: Clock) -> None:
    name = await shop.draft()
    await shop.sending.schedule(LOCAL, name, clock.start + timedelta(hours=1), "")
    edit = DraftInput(
        "Renamed", shop.channel, InteractionWindow.ALL_CONTACTS, (), (TextMessage("x"),)
    )
    with pytest.raises(FailedPrecondition) as e:
        await shop.broadcasts.update(LOCAL, name, ["display_name"], edit)
    assert e.value.reason == "BROADCAST_NOT_DRAFT" and e.value.metadata["state"] == "SCHEDULED"
    with pytest.raises(FailedPrecondition) as e:
        await shop.broadcasts.delete(LOCAL, name)
    assert e.value.reason == "BROADCAST_NOT_DRAFT"
    with pytest.raises(FailedPrecondition) as e:
        await shop.sending.send(LOCAL, name, "")
    assert e.value.reason == "BROADCAST_NOT_DRAFT"
    with pytest.raises(FailedPrecondition) as e:
        await shop.sending.schedule(LOCAL, name, clock.start + timedelta(hours=2), "")
    assert e.value.reason == "BROADCAST_NOT_DRAFT"

    draft = await shop.sending.unschedule(LOCAL, name, "u-1")
    assert (draft.state, draft.schedule_time) == (BroadcastState.DRAFT, None)
    assert (await shop.sending.unschedule(LOCAL, name, "u-1")).state is BroadcastState.DRAFT
    with pytest.raises(FailedPrecondition) as e:
        await shop.sending.unschedule(LOCAL, name, "")
    assert e.value.reason == "BROADCAST_NOT_SCHEDULED"
    assert (
        await shop.broadcasts.update(LOCAL, name, ["display_name"], edit)
    ).display_name == "Renamed"
    later = clock.start + timedelta(hours=3)
    assert (await shop.sending.schedule(LOCAL, name, later, "")).schedule_time == later
    clock.now = clock.start + timedelta(hours=1)  # the first time: nothing is due any more
    assert await _firing(shop).fire_due() == 0

    cancelled = await shop.sending.cancel(LOCAL, name)
    assert cancelled.state is BroadcastState.CANCELLED and cancelled.counters.total == 0
    clock.now = later
    assert await _firing(shop).fire_due() == 0
    assert not shop.ledger.received


async def test_request_ids(shop: Shop, clock: Clock) -> None:
    name = await shop.draft()
    at = clock.start + timedelta(minutes=10)
    first = await shop.sending.schedule(LOCAL, name, at, "r-1")
    clock.now = at - timedelta(seconds=30)  # a retry, too late to be accepted as new
    assert await shop.sending.schedule(LOCAL, name, at, "r-1") == first
    with pytest.raises(InvalidArgument) as e:
        await shop.sending.schedule(LOCAL, name, at + timedelta(hours=1), "r-1")
    assert e.value.reason == "REQUEST_ID_REUSED"


async def test_fire_time_quota_shortfall_fails_with_its_reason(shop: Shop, clock: Clock) -> None:
    name = await shop.draft()
    at = clock.start + timedelta(days=3)
    await shop.sending.schedule(LOCAL, name, at, "")  # 120 of 1000: fine now
    shop.ledger.used = 950  # 50 left at its time
    clock.now = at
    assert await _firing(shop).fire_due() == 1
    failed = await shop.broadcasts.get(LOCAL, name)
    assert (failed.state, failed.failure_reason) == (BroadcastState.FAILED, "QUOTA_EXCEEDED")
    assert failed.complete_time == at and failed.send_time is None
    assert not shop.ledger.received


async def test_fire_time_deleted_group_or_channel_fails_with_its_reason(
    shop: Shop, clock: Clock, hub: ChannelHub
) -> None:
    groups = CustomerGroups(shop.ctx)
    group = await groups.create(LOCAL, shop.parent, "VIP", "", "")
    group_name = f"{shop.parent}/customerGroups/{group.id}"
    draft = DraftInput(
        "VIP sale",
        shop.channel,
        InteractionWindow.ALL_CONTACTS,
        (group_name,),
        (TextMessage("hi"),),
    )
    made = await shop.broadcasts.create(LOCAL, shop.parent, draft, "")
    name = f"{shop.parent}/broadcasts/{made.id}"
    at = clock.start + timedelta(hours=1)
    await shop.sending.schedule(LOCAL, name, at, "")
    with pytest.raises(FailedPrecondition) as e:  # the scheduled broadcast holds its group
        await groups.delete(LOCAL, group_name)
    assert e.value.reason == "CUSTOMER_GROUP_IN_USE" and e.value.metadata["broadcasts"] == name
    await shop.ctx.db.write(group_repo.delete_group, group.merchant, group.id)  # gone regardless

    clock.now = at
    assert await _firing(shop).fire_due() == 1
    by_group = await shop.broadcasts.get(LOCAL, name)
    assert (by_group.state, by_group.failure_reason) == (
        BroadcastState.FAILED,
        "CUSTOMER_GROUP_NOT_FOUND",
    )

    plain = await shop.draft()
    later = at + timedelta(hours=1)
    await shop.sending.schedule(LOCAL, plain, later, "")
    await Channels(shop.ctx, hub).delete(LOCAL, shop.channel)
    # A scheduled broadcast, like a draft, stays as it is when its channel is deleted.
    assert (await shop.broadcasts.get(LOCAL, plain)).state is BroadcastState.SCHEDULED
    clock.now = later
    assert await _firing(shop).fire_due() == 1
    by_channel = await shop.broadcasts.get(LOCAL, plain)
    assert (by_channel.state, by_channel.failure_reason) == (
        BroadcastState.FAILED,
        "CHANNEL_NOT_CONNECTED",
    )
    assert not shop.ledger.received


@pytest.mark.parametrize(
    ("ahead", "reason"),
    [
        (None, "SCHEDULE_TIME_MISSING"),
        (timedelta(seconds=-1), "SCHEDULE_TIME_PAST"),
        (timedelta(0), "SCHEDULE_TIME_PAST"),
        (timedelta(seconds=59), "SCHEDULE_TIME_TOO_SOON"),
        (timedelta(days=180, seconds=1), "SCHEDULE_TIME_TOO_FAR"),
        (timedelta(days=181), "SCHEDULE_TIME_TOO_FAR"),
        (timedelta(seconds=60), None),
        (timedelta(days=180), None),
    ],
)
async def test_the_schedule_window(
    shop: Shop, clock: Clock, ahead: timedelta | None, reason: str | None
) -> None:
    name = await shop.draft()
    when = None if ahead is None else clock.start + ahead
    if reason is None:
        assert (await shop.sending.schedule(LOCAL, name, when, "")).schedule_time == when
        return
    with pytest.raises(InvalidArgument) as e:
        await shop.sending.schedule(LOCAL, name, when, "")
    assert e.value.reason == reason
    assert [(v.field, v.reason) for v in e.value.violations] == [("schedule_time", reason)]
    assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.DRAFT


async def test_send_preconditions_are_checked_when_scheduling(shop: Shop, clock: Clock) -> None:
    shop.ledger.used = 950
    name = await shop.draft()
    with pytest.raises(FailedPrecondition) as e:
        await shop.sending.schedule(LOCAL, name, clock.start + timedelta(hours=1), "")
    assert e.value.reason == "QUOTA_EXCEEDED"
    with pytest.raises(NotFound):
        await shop.sending.schedule(
            LOCAL, f"{shop.parent}/broadcasts/nope", clock.start + timedelta(hours=1), ""
        )


async def test_the_loop_fires_on_the_real_clock(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    async for shop in _shop(ctx, hub, merchant, 10):
        sending = Sending(
            ctx, shop.broadcasts, shop.dispatcher.wake,
            window=ScheduleWindow(min_lead=timedelta(milliseconds=300)),
        )  # fmt: skip
        firing = Firing(ctx, sending.fire_many)
        firing.start()
        try:
            name = await shop.draft()
            at = ctx.now() + timedelta(milliseconds=400)
            await sending.schedule(LOCAL, name, at, "")
            firing.wake()
            done = await shop.finished(name)
            assert done.state is BroadcastState.SENT and done.send_time is not None
            assert timedelta(0) <= done.send_time - at < timedelta(seconds=2)
            _exactly_once(shop)
        finally:
            await firing.stop()


class _HeldFiring:
    """Fires due broadcasts through `fire` once released, noting each firing."""

    def __init__(self, fire: Callable[[list[tuple[str, str]]], Awaitable[object]]) -> None:
        self._fire = fire
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.fired: list[list[tuple[str, str]]] = []

    async def __call__(self, due: list[tuple[str, str]]) -> object:
        self.started.set()
        await self.release.wait()
        self.fired.append(due)
        return await self._fire(due)


async def test_a_stopping_firing_loop_finishes_the_firing_under_way_and_claims_no_more(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """SIGTERM while due broadcasts are being fired: that firing completes (not left to
    another replica once its claim lapses, 30 s later), and nothing is claimed afterwards."""
    async for shop in _shop(ctx, hub, merchant, 10):
        sending = Sending(
            ctx, shop.broadcasts, shop.dispatcher.wake,
            window=ScheduleWindow(min_lead=timedelta(milliseconds=300)),
        )  # fmt: skip
        held = _HeldFiring(sending.fire_many)
        firing = Firing(ctx, held)
        firing.start()
        try:
            first, later = await shop.draft("first"), await shop.draft("later")
            await sending.schedule(LOCAL, first, ctx.now() + timedelta(milliseconds=400), "")
            firing.wake()
            async with asyncio.timeout(10):
                await held.started.wait()
            stopping = asyncio.create_task(firing.stop(grace=10.0))
            await asyncio.sleep(0.05)
            assert not stopping.done()  # it waits for the firing under way
            held.release.set()
            await stopping
            assert (await shop.finished(first)).state is BroadcastState.SENT
            await sending.schedule(LOCAL, later, ctx.now() + timedelta(milliseconds=400), "")
            await asyncio.sleep(1.0)
            assert len(held.fired) == 1  # the stopped loop claimed nothing more
            assert (await shop.broadcasts.get(LOCAL, later)).state is BroadcastState.SCHEDULED
            await sending.unschedule(LOCAL, later, "")  # due: other tests' firings would take it
        finally:
            held.release.set()
            await firing.stop()


async def test_a_precondition_failing_as_it_starts_fails_that_one_alone(
    shop: Shop, clock: Clock
) -> None:
    """Broadcasts firing together start in one transaction: one whose group went, or whose
    audience grew past the quota, since its check fails alone, and writes no deliveries."""
    groups = CustomerGroups(shop.ctx)
    group = await groups.create(LOCAL, shop.parent, "VIP", "", "")
    group_name = f"{shop.parent}/customerGroups/{group.id}"
    draft = DraftInput(
        "VIP", shop.channel, InteractionWindow.ALL_CONTACTS, (group_name,), (TextMessage("x"),)
    )
    vip = await shop.broadcasts.create(LOCAL, shop.parent, draft, "")
    names = [f"{shop.parent}/broadcasts/{vip.id}", await shop.draft("Grown"), await shop.draft()]
    at = clock.start + timedelta(hours=1)
    for name in names:
        await shop.sending.schedule(LOCAL, name, at, "")
    grown = await shop.broadcasts.get(LOCAL, names[1])

    class Racing(Sending):
        async def _check_due(self, channel: ChannelName, due: list[Broadcast]) -> Any:
            checked = await super()._check_due(channel, due)
            # The group is deleted since the check; and the quota left shrinks below the
            # audience of one (as if its audience grew past it).
            await self._ctx.db.write(group_repo.delete_group, group.merchant, group.id)
            short = Quota(limited=True, limit=100, used=0)
            return [replace(d, quota=short) if d.broadcast.id == grown.id else d for d in checked]

    clock.now = at
    racing = Racing(shop.ctx, shop.broadcasts, shop.dispatcher.wake)
    ended = await racing.fire_many(
        [(grown.merchant, BroadcastName.parse(n).broadcast) for n in names]
    )
    assert [(b.state, b.failure_reason) for b in ended if b is not None] == [
        (BroadcastState.FAILED, "CUSTOMER_GROUP_NOT_FOUND"),
        (BroadcastState.FAILED, "QUOTA_EXCEEDED"),
        (BroadcastState.SENDING, ""),
    ]
    assert not await shop.outcomes(grown.id)  # its snapshot undone
    assert (await shop.finished(names[2])).counters.sent == 120
    _exactly_once(shop)


async def test_a_limited_schedule_fires_capped_and_says_so_in_lifecycle_events(
    shop: Shop, clock: Clock
) -> None:
    """A limit given when scheduling is kept with the broadcast and applied at its time; each
    step of its life is one Message Center event, in order: scheduled, unscheduled, scheduled,
    sending, sent."""
    name = await shop.draft()
    n = BroadcastName.parse(name)
    at = clock.start + timedelta(hours=3)
    limit = RecipientLimit(50)
    scheduled = await shop.sending.schedule(LOCAL, name, at, "", limit)
    assert scheduled.recipient_limit == limit
    assert (await shop.sending.unschedule(LOCAL, name, "")).recipient_limit is None
    await shop.sending.schedule(LOCAL, name, at, "", limit)
    clock.now = at
    assert await _firing(shop).fire_due() == 1
    done = await shop.finished(name)
    assert (done.state, done.counters.total, done.counters.left_out_by_limit) == (
        BroadcastState.SENT,
        50,
        70,
    )
    assert done.recipient_limit == limit
    wanted = EventFilter(kinds=LIFECYCLE_KINDS, broadcast=n.broadcast)
    steps = await shop.ctx.db.read(events_repo.after, n.merchant, START, 100, wanted)
    assert [e.kind for e in steps] == [
        EventKind.BROADCAST_SCHEDULED,
        EventKind.BROADCAST_UNSCHEDULED,
        EventKind.BROADCAST_SCHEDULED,
        EventKind.BROADCAST_SENDING,
        EventKind.BROADCAST_SENT,
    ]
    final = steps[-1].counters
    assert final is not None and (final.total, final.sent) == (50, 50)


async def test_the_upcoming_list_orders_by_schedule_time(shop: Shop, clock: Clock) -> None:
    """ListBroadcasts ordered by `schedule_time asc`: the next to go first, unscheduled last,
    across pages."""
    later, sooner, draft = await shop.draft("Later"), await shop.draft("Sooner"), await shop.draft()
    await shop.sending.schedule(LOCAL, later, clock.start + timedelta(days=2), "")
    await shop.sending.schedule(LOCAL, sooner, clock.start + timedelta(hours=2), "")
    listed: list[str] = []
    token = ""
    while True:
        page, token = await shop.broadcasts.list_page(
            LOCAL, shop.parent, 1, token, ListQuery(order_by="schedule_time asc")
        )
        listed += [f"{shop.parent}/broadcasts/{b.id}" for b in page]
        if not token:
            break
    assert listed[:2] == [sooner, later] and draft in listed[2:]
