"""The store holds to the broadcast lifecycle's table: every store operation that changes a
broadcast's state, driven through sending, dispatch, cancelling and a channel going away, makes
only transitions the table has, and together they make every one of them; operations on a
broadcast whose state the table does not allow them from change nothing. Each transition writes
its lifecycle event in the transaction that makes it, exactly once, and no other write does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, text

from broadcaster.domain import lifecycle
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Broadcast, Estimate
from broadcaster.domain.deliveries import DeliveryOutcome, EventKind
from broadcaster.domain.lifecycle import BroadcastState, Transition
from broadcaster.domain.scheduling import ScheduleWindow
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.sending import Sending
from broadcaster.store import broadcasts as repo
from broadcaster.store import dispatch
from broadcaster.store.database import Database
from tests.integration.test_sending import Shop, _claimed_by_the_dead, _shop

Edge = tuple[BroadcastState, BroadcastState]
Operation = Callable[[Connection], Any]


def _states(conn: Connection, merchant: str) -> dict[str, BroadcastState]:
    rows = conn.execute(
        text("SELECT id, state FROM broadcasts WHERE merchant_id = :m"), {"m": merchant}
    )
    return {str(b): BroadcastState(s) for b, s in rows}


def _lifecycle_rows(conn: Connection, merchant: str, after: int) -> list[tuple[str, EventKind]]:
    rows = conn.execute(
        text(
            "SELECT broadcast_id, kind FROM outbox WHERE merchant_id = :m AND seq > :after"
            " AND kind <> 0 ORDER BY seq"
        ),
        {"m": merchant, "after": after},
    )
    return [(str(b), EventKind(k)) for b, k in rows]


def _last_row(conn: Connection) -> int:
    return int(conn.execute(text("SELECT COALESCE(max(seq), 0) FROM outbox")).scalar_one())


# The event each (before, after) change of state records: the transition making it.
_EVENT_OF_EDGE = {
    (source, rule.target): lifecycle.EVENTS[transition]
    for transition, rule in lifecycle.TABLE.items()
    for source in rule.sources
}


class Watched:
    """The database, with every write noting the changes of the merchant's broadcasts' states
    it made, as (before, after), and checking that it wrote exactly their lifecycle events."""

    def __init__(self, db: Database, merchant: str) -> None:
        self._db = db
        self._merchant = merchant
        self.seen: set[Edge] = set()
        self.events = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._watched(self._db.write, fn, *args, **kwargs)

    async def write_soon(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._watched(self._db.write_soon, fn, *args, **kwargs)

    async def _watched(
        self, write: Callable[..., Any], fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        def watched(conn: Connection) -> tuple[Any, set[Edge]]:
            before, last = _states(conn, self._merchant), _last_row(conn)
            result = fn(conn, *args, **kwargs)
            after = _states(conn, self._merchant)
            moved = {b: (before[b], s) for b, s in after.items() if b in before and before[b] != s}
            written = _lifecycle_rows(conn, self._merchant, last)
            assert sorted(written) == sorted((b, _EVENT_OF_EDGE[e]) for b, e in moved.items())
            self.events += len(written)
            return result, set(moved.values())

        result, changed = await write(watched)
        self.seen |= changed  # once committed
        return result


async def test_the_store_makes_exactly_the_transitions_of_the_table(
    db: Database, hub: ChannelHub, merchant: str
) -> None:
    watched = Watched(db, merchant)
    ctx = ServiceContext(cast(Database, watched))

    # Sent to the end, with an invalid recipient and a batch past its key window on the way.
    async for shop in _shop(ctx, hub, merchant, 120, bad=1, start=False, account=f"{merchant}-1"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await _claimed_by_the_dead(ctx, shop.channel_id, timedelta(hours=2))
        shop.dispatcher.start()
        assert (await shop.finished(name)).state is BroadcastState.SENT

    # Sent with no recipient.
    async for shop in _shop(ctx, hub, merchant, 0, account=f"{merchant}-2"):
        name = await shop.draft()
        assert (await shop.sending.send(LOCAL, name, "")).state is BroadcastState.SENT

    # The quota running out; the channel rejecting a batch.
    async for shop in _shop(ctx, hub, merchant, 230, quota="300", account=f"{merchant}-3"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        shop.ledger.used = 180
        assert (await shop.finished(name)).failure_reason == "QUOTA_EXHAUSTED"
    async for shop in _shop(ctx, hub, merchant, 120, account=f"{merchant}-4"):
        shop.ledger.script[:] = ["reject"]
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        assert (await shop.finished(name)).failure_reason == "CHANNEL_REJECTED"

    # Cancelled.
    async for shop in _shop(ctx, hub, merchant, 120, start=False, account=f"{merchant}-5"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        assert (await shop.sending.cancel(LOCAL, name)).state is BroadcastState.CANCELLED

    # Its channel disconnected while it was sending.
    async for shop in _shop(ctx, hub, merchant, 120, start=False, account=f"{merchant}-6"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        await Channels(ctx, hub).delete(LOCAL, shop.channel)
        shop.dispatcher.start()
        assert (await shop.finished(name)).failure_reason == "CHANNEL_NOT_CONNECTED"

    # Scheduled: unscheduled, cancelled, failing at its time, fired (with and without
    # recipients), each on a clock moved past its time.
    async for shop in _shop(ctx, hub, merchant, 120, quota="1000", account=f"{merchant}-9"):
        sending = Sending(ctx, shop.broadcasts, shop.dispatcher.wake, window=_SOON)
        names = [await shop.draft(f"Scheduled {n}") for n in range(4)]
        for name in names:
            await sending.schedule(LOCAL, name, ctx.now() + _AHEAD, "")
        await sending.unschedule(LOCAL, names[0], "")
        await sending.cancel(LOCAL, names[1])
        await asyncio.sleep(_AHEAD.total_seconds() + 0.05)
        b = await shop.broadcasts.get(LOCAL, names[2])
        await sending.fire(b.merchant, b.id)
        shop.ledger.used = 990  # short of quota at its time
        b = await shop.broadcasts.get(LOCAL, names[3])
        # Another replica's (one quota read is shared by a moment's firings of one replica).
        await Sending(ctx, shop.broadcasts, shop.dispatcher.wake).fire(b.merchant, b.id)
        shop.ledger.used = 0
    async for shop in _shop(ctx, hub, merchant, 0, account=f"{merchant}-10"):
        sending = Sending(ctx, shop.broadcasts, shop.dispatcher.wake, window=_SOON)
        name = await shop.draft()
        b = await sending.schedule(LOCAL, name, ctx.now() + _AHEAD, "")
        await asyncio.sleep(_AHEAD.total_seconds() + 0.05)
        assert (await sending.fire(b.merchant, b.id)) is not None

    assert watched.seen <= lifecycle.edges(), "transitions outside the table"
    assert lifecycle.edges() <= watched.seen, "transitions of the table never made"
    assert watched.events >= len(lifecycle.edges())


_ESTIMATE = Estimate(1, 0, 0, False, None, True, "", "", datetime(2026, 1, 1, tzinfo=UTC))
_SOON = ScheduleWindow(min_lead=timedelta(milliseconds=10))
# How far ahead the test schedules: past the lead even when the Schedule call itself is slow
# (20 ms was not, with the whole suite running on two cores).
_AHEAD = timedelta(milliseconds=300)


def _stop(broadcast: str, transition: Transition, now: datetime) -> Operation:
    def run(conn: Connection) -> bool:
        outcome = DeliveryOutcome.NOT_SENT_STOPPED
        return dispatch.stop(conn, broadcast, transition, reason="X", outcome=outcome, now=now)

    return run


def _send_again(b: Broadcast, batches: int, now: datetime, scheduled: bool = False) -> Operation:
    def run(conn: Connection) -> Broadcast:
        estimate = b.send_estimate or _ESTIMATE
        return repo.start_sending(
            conn,
            b,
            total=1,
            excluded=0,
            batches=batches,
            estimate=estimate,
            now=now,
            scheduled=scheduled,
        )

    return run


def _outside_the_table(b: Broadcast, now: datetime) -> list[Operation]:
    """The store operation of each transition the table does not allow from `b`'s state
    (completing, recording a batch, is tried where there is one to record)."""
    operations: list[Operation] = []
    for transition in Transition:
        if lifecycle.allows(transition, b.state):
            continue
        if transition in (Transition.FAIL, Transition.CANCEL):
            operations.append(_stop(b.id, transition, now))
        elif transition in (Transition.SEND, Transition.SEND_EMPTY):
            operations.append(_send_again(b, 1 if transition is Transition.SEND else 0, now))
        elif transition in (Transition.FIRE, Transition.FIRE_EMPTY):
            batches = 1 if transition is Transition.FIRE else 0
            operations.append(_send_again(b, batches, now, scheduled=True))
        elif transition is Transition.SCHEDULE:
            operations.append(lambda conn: repo.schedule(conn, b, now, now))
        elif transition is Transition.UNSCHEDULE:
            operations.append(lambda conn: repo.unschedule(conn, b, now))
    return operations


async def test_operations_outside_the_table_change_nothing(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """E.g. a sent broadcast is not cancelled, nor a cancelled one completed when its last batch
    is recorded."""
    seen: set[BroadcastState] = set()

    async def refused(shop: Shop, broadcast_id: str) -> None:
        name = f"{shop.parent}/broadcasts/{broadcast_id}"
        before = await shop.broadcasts.get(LOCAL, name)
        seen.add(before.state)
        for operation in _outside_the_table(before, ctx.now()):
            await ctx.db.write(operation)
            assert await shop.broadcasts.get(LOCAL, name) == before

    async for shop in _shop(
        ctx, hub, merchant, 120, start=False, account=f"{merchant}-7"
    ):  # batches of 50, 50, 20
        draft = await shop.broadcasts.get(LOCAL, await shop.draft("Draft"))
        await refused(shop, draft.id)

        # Cancelled with a batch in flight, which is recorded afterwards: the last open batch
        # closes, and the broadcast stays cancelled.
        name = await shop.draft("Cancelled")
        await shop.sending.send(LOCAL, name, "")
        now = ctx.now()
        (in_flight,) = await ctx.db.write(
            dispatch.claim,
            channel=shop.channel_id,
            owner="test",
            lease_until=now + timedelta(seconds=1000),
            now=now,
            limit=1,
        )
        cancelled = await shop.sending.cancel(LOCAL, name)
        recorded = [(in_flight, ctx.now(), dispatch.Acceptance())]
        assert await ctx.db.write(dispatch.record_sent, recorded) == [50]
        done = await shop.broadcasts.get(LOCAL, name)
        assert (done.state, done.counters.sent) == (BroadcastState.CANCELLED, 50)
        assert not await ctx.db.read(dispatch.sending_on, shop.channel_id)
        await refused(shop, cancelled.id)

        name = await shop.draft("Failed")
        failed = await shop.sending.send(LOCAL, name, "")
        assert await ctx.db.write(_stop(failed.id, Transition.FAIL, ctx.now()))
        await refused(shop, failed.id)

    async for shop in _shop(ctx, hub, merchant, 0, start=False, account=f"{merchant}-8"):
        sent = await shop.sending.send(LOCAL, await shop.draft("Sent"), "")
        await refused(shop, sent.id)

    async for shop in _shop(ctx, hub, merchant, 0, start=False, account=f"{merchant}-11"):
        sending = Sending(ctx, shop.broadcasts, shop.dispatcher.wake, window=_SOON)
        name = await shop.draft("Scheduled")
        later = ctx.now() + timedelta(days=1)
        await refused(shop, (await sending.schedule(LOCAL, name, later, "")).id)
        await sending.cancel(LOCAL, name)

    assert seen == set(BroadcastState) - {BroadcastState.SENDING}
