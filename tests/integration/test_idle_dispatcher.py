"""An idle dispatcher costs next to nothing however many channels are connected: it looks for work
when told (a Send here, a Send on another replica through PostgreSQL) and otherwise on a slow
safety poll. A batch due later is still sent when due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Connection, event, text

from broadcaster.dispatch.engine import Dispatcher, Settings
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import channels
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.database import Database
from tests.integration.test_sending import Shop, _shop

CHANNELS = 300
WINDOW = 3.0  # seconds of idling measured
NEVER = 3600.0  # a safety poll that never fires during a test
# Replicas as the tests run them: leases and polls short, the safety poll out of the way.
REPLICA = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=8, safety_poll_seconds=NEVER)


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    """Every statement `db` runs meanwhile (as metrics.watch_database counts them)."""
    seen: list[str] = []

    def executed(conn: object, cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    for engine in db.engines():
        event.listen(engine, "after_cursor_execute", executed)
    try:
        yield seen
    finally:
        for engine in db.engines():
            event.remove(engine, "after_cursor_execute", executed)


@asynccontextmanager
async def _replica(database_url: str, hub: ChannelHub) -> AsyncIterator[Dispatcher]:
    """A dispatcher of another process on the same database: its own connections, its own
    channel hub and (on PostgreSQL) its own listener."""
    db = Database.from_url(database_url, threads=2)
    other = ChannelHub(hub.registry, hub.sealer, db, {})
    dispatcher = Dispatcher(ServiceContext(db), other, REPLICA)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        await other.close()
        db.close()


async def _first_attempt(shop: Shop, seconds: float) -> float:
    """Seconds until the channel receives its first send request (at most `seconds`)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            if shop.ledger.attempts:
                break
            await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_an_idle_dispatcher_costs_no_statement_per_channel(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Hundreds of connected channels and nothing to send: fewer than one statement a second
    (one read of the open batches per safety poll), none per channel."""

    def connect(conn: Connection) -> None:
        for _ in range(CHANNELS):
            channel_id = new_id()
            account = (AccountTier.VERIFIED, f"acct-{channel_id}", "Shop", "@shop", "")
            channels.create(conn, merchant, channel_id, "fake", account, "sealed", from_us(1))

    await ctx.db.write(connect)
    dispatcher = Dispatcher(ctx, hub)  # the default safety poll
    dispatcher.start()
    try:
        await asyncio.sleep(0.5)  # its first look, and on PostgreSQL its listener connecting
        with _statements(ctx.db) as seen:
            await asyncio.sleep(WINDOW)
    finally:
        await dispatcher.stop()
    assert len(seen) / WINDOW < 1.0, seen


async def test_a_send_on_one_replica_wakes_another_at_once(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, database_url: str
) -> None:
    """The Send's transaction notifies every replica: the other one starts sending well within a
    second, though its safety poll would take an hour. (Here the sending replica's own
    dispatcher is not running, so only the other can send.)"""
    if ctx.db.dialect != "postgresql":
        pytest.skip("several replicas share PostgreSQL only; SQLite is for one process")
    async for shop in _shop(ctx, hub, merchant, 230, start=False):
        async with _replica(database_url, hub):
            await asyncio.sleep(0.5)  # it has looked once, found nothing, and now waits
            name = await shop.draft()
            await shop.sending.send(LOCAL, name, "")
            assert await _first_attempt(shop, 10.0) < 0.5
            done = await shop.finished(name)
            assert (done.state, done.counters.sent) == (BroadcastState.SENT, 230)


def _due_later(conn: Connection, broadcast: str, when: int) -> None:
    conn.execute(
        text("UPDATE batches SET due_time = :t WHERE broadcast_id = :b"),
        {"t": when, "b": broadcast},
    )


async def test_a_batch_due_later_is_sent_when_due(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """A broadcast whose batches are due in a second (as a batch that starts over with a fresh
    key is): nothing goes before, everything soon after, with no Send to wake anyone then."""
    async for shop in _shop(ctx, hub, merchant, 230, settings=REPLICA, start=False):
        name = await shop.draft()
        sent = await shop.sending.send(LOCAL, name, "")
        due = ctx.now() + timedelta(seconds=1.0)
        await ctx.db.write(_due_later, sent.id, to_us(due))
        shop.dispatcher.start()
        waited = await _first_attempt(shop, 10.0)
        assert ctx.now() >= due and 0.5 < waited < 3.0
        done = await shop.finished(name)
        assert (done.state, done.counters.sent) == (BroadcastState.SENT, 230)
