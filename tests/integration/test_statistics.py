"""Broadcast statistics with the core alone (the fake channel that keeps statistics): each
batch counted under the broadcast's unit and its request id kept, the figures read on schedule
and stored with withheld ones kept as NULL, one replica reading a broadcast at a time, reads of
a channel paced across replicas, and neither a storm nor a miss after a replica dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, text

from broadcaster.dispatch.engine import Dispatcher, Settings
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.deliveries import DeliveryOutcome
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.model import ContactImport, FollowerState
from broadcaster.domain.reasons import Reason
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.sending import Sending
from broadcaster.services.statistics import Collector
from broadcaster.store import contacts
from broadcaster.store import statistics as repo
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.database import Database
from tests.fakechannel import LEDGERS, FakeStatsChannel, Ledger

FAST = Settings(lease_seconds=1.0, poll_seconds=0.02, in_flight=8)
HOUR = timedelta(hours=1)


class Clock:
    """Real time, moved on by hand: leases and due times in the future come about at once."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


@dataclass
class Shop:
    ctx: ServiceContext
    clock: Clock
    broadcasts: Broadcasts
    sending: Sending
    parent: str
    channel: str
    channel_id: str
    ledger: Ledger

    async def send(self, text_: str = "Sale https://shop.example/sale", name: str = "Sale") -> str:
        draft = DraftInput(
            name, self.channel, InteractionWindow.ALL_CONTACTS, (), (TextMessage(text_),)
        )
        made = await self.broadcasts.create(LOCAL, self.parent, draft, "")
        full = f"{self.parent}/broadcasts/{made.id}"
        await self.sending.send(LOCAL, full, "")
        async with asyncio.timeout(30):
            while True:
                if (await self.broadcasts.get(LOCAL, full)).state is not BroadcastState.SENDING:
                    return made.id
                await asyncio.sleep(0.02)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(db: Database, clock: Clock) -> ServiceContext:
    return ServiceContext(db, clock=clock)


async def _shop(
    ctx: ServiceContext,
    hub: ChannelHub,
    merchant: str,
    people: int,
    kind: str = "fake-stats",
    **credentials: str,
) -> AsyncIterator[Shop]:
    token = uuid.uuid4().hex
    parent = f"merchants/{merchant}"
    account = f"{merchant}-{token[:6]}"
    made = await Channels(ctx, hub).create(
        LOCAL, parent, kind,
        {"token": token, "account": account, "tier": "verified", "withhold_below": "10",
         **credentials}, "",
    )  # fmt: skip
    items = [
        ContactImport(f"u-{n:05d}", "", "", FollowerState.FOLLOWING, None, False, None, from_us(1))
        for n in range(people)
    ]
    await ctx.db.write(contacts.merge, merchant, made.id, items, from_us(1))
    broadcasts = Broadcasts(ctx, hub)
    dispatcher = Dispatcher(ctx, hub, FAST)
    dispatcher.start()
    try:
        clock = ctx.clock
        assert isinstance(clock, Clock)
        yield Shop(
            ctx, clock, broadcasts, Sending(ctx, broadcasts, dispatcher.wake), parent,
            f"{parent}/channels/{made.id}", made.id, LEDGERS[token],
        )  # fmt: skip
    finally:
        await dispatcher.stop()


async def _one_shop(ctx: ServiceContext, hub: ChannelHub, merchant: str, **kw: str) -> Shop:
    gen = _shop(ctx, hub, merchant, 120, **kw)
    shop = await anext(gen)
    _running.append(gen)
    return shop


_running: list[AsyncIterator[Shop]] = []


def _settle(conn: Connection) -> None:
    conn.execute(text("UPDATE broadcast_statistics SET next_fetch_time = NULL"))


@pytest.fixture(autouse=True)
async def _stop_shops(db: Database) -> AsyncIterator[None]:
    # The database is shared by the run: earlier tests' broadcasts are read no more, so each
    # test counts the reads of its own.
    await db.write(_settle)
    yield
    while _running:
        with pytest.raises(StopAsyncIteration):
            await anext(_running.pop())


def _row(conn: Connection, broadcast: str) -> dict[str, object] | None:
    """The broadcast's statistics row as stored."""
    row = conn.execute(
        text("SELECT * FROM broadcast_statistics WHERE broadcast_id = :b"), {"b": broadcast}
    ).first()
    return None if row is None else dict(row._mapping)


def _request_ids(conn: Connection, broadcast: str) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            text("SELECT request_id FROM batches WHERE broadcast_id = :b ORDER BY batch"),
            {"b": broadcast},
        )
    ]


async def _read_once(collector: Collector, reads: int = 1) -> None:
    """One pass of the collector that claims `reads` due reads, until they are done."""
    assert await collector.collect_due() == reads
    await collector.idle()


async def test_batches_counted_under_the_unit_and_figures_stored_with_none_kept(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    sent_at = ctx.now()
    broadcast = await shop.send()
    # Every batch went out under the broadcast's unit, and keeps the channel's request id.
    assert dict(shop.ledger.units) == {f"b{broadcast}": 120}
    ids = await ctx.db.read(_request_ids, broadcast)
    assert len(ids) == 3 and all(ids) and len(set(ids)) == 3
    assert set(ids) <= set(shop.ledger.accepted_keys.values())
    # ListDeliveries shows each recipient's request id, filtered or not.
    name = f"{shop.parent}/broadcasts/{broadcast}"
    for outcome in (DeliveryOutcome.SENT, None):
        _, shown, _ = await shop.sending.deliveries(LOCAL, name, 120, "", outcome)
        assert [d.request_id for d in shown] == [ids[n // 50] for n in range(120)]
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["unit"] == f"b{broadcast}" and row["unavailable_reason"] == ""
    assert row["fetch_time"] is None
    due = from_us(int(str(row["next_fetch_time"])))
    assert sent_at + HOUR <= due <= ctx.now() + HOUR
    # Not read yet: no figures, and a reason says why.
    before = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
    assert before.figures is None and before.unavailable_reason == Reason.STATISTICS_NOT_YET
    assert before.delivered == 120 and before.open_rate is None

    collector = Collector(ctx, hub)
    assert await collector.collect_due() == 0  # not due for an hour
    shop.clock.shift += HOUR
    await _read_once(collector)
    stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
    f = stats.figures
    assert f is not None and stats.unavailable_reason == ""
    # 120 counted: 60 opened; 24 clicked, 30 clicks; media plays withheld (None, not 0).
    assert (f.unique_impressions, f.unique_clicks, f.unique_media_plays) == (60, 24, None)
    assert stats.open_rate == 0.5 and stats.click_rate == 0.2
    assert [(b.seq, b.impressions, b.media_plays) for b in f.bubbles] == [(1, 72, None)]
    assert [(u.seq, u.url, u.clicks, u.unique_clicks) for u in f.urls] == [
        (1, "https://shop.example/sale", 30, 24)
    ]
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["unique_media_plays"] is None and row["failures"] == 0
    assert row["lease_owner"] == "" and row["fetch_time"] is not None
    # Read again an hour later (the first day), not before.
    nxt = from_us(int(str(row["next_fetch_time"])))
    assert timedelta(minutes=59) < nxt - ctx.now() <= HOUR


async def test_withheld_figures_are_null_not_zero(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    gen = _shop(ctx, hub, merchant, 30)
    shop = await anext(gen)
    _running.append(gen)
    broadcast = await shop.send()
    shop.clock.shift += HOUR
    collector = Collector(ctx, hub)
    await _read_once(collector)
    stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
    f = stats.figures
    assert f is not None
    # 30 counted: 15 opened; 6 clicked and 7 clicks are under the channel's threshold (10).
    assert (f.unique_impressions, f.unique_clicks) == (15, None)
    assert [(u.clicks, u.unique_clicks) for u in f.urls] == [(None, None)]
    assert stats.click_rate is None and stats.open_rate == 0.5
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["unique_clicks"] is None
    assert '"clicks"' not in str(row["details"])


async def test_a_channel_without_statistics_says_so(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant, kind="fake")
    broadcast = await shop.send()
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["unit"] == "" and row["next_fetch_time"] is None
    assert row["unavailable_reason"] == Reason.STATISTICS_NOT_SUPPORTED
    stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
    assert stats.figures is None
    assert stats.unavailable_reason == Reason.STATISTICS_NOT_SUPPORTED
    assert all(await ctx.db.read(_request_ids, broadcast))  # request ids all the same


async def test_allowance_used_up_is_recorded_once_and_nothing_is_read(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant, statistics_units="1")
    first = await shop.send(name="first")
    second = await shop.send(name="second")  # past the allowance: sent without a unit
    assert set(shop.ledger.units) == {f"b{first}"}
    assert sum(shop.ledger.received.values()) == 240  # the send itself was not affected
    row = await ctx.db.read(_row, second)
    assert row is not None and row["unavailable_reason"] == Reason.STATISTICS_ALLOWANCE_USED_UP
    assert row["next_fetch_time"] is None
    shop.clock.shift += HOUR
    collector = Collector(ctx, hub)
    assert await collector.collect_due() == 1  # the first only
    await collector.idle()
    assert [u for u, _ in shop.ledger.statistics_reads] == [f"b{first}"]
    stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{second}")
    assert stats.unavailable_reason == Reason.STATISTICS_ALLOWANCE_USED_UP


async def test_two_collectors_share_the_work_one_read_per_channel_pace(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ceiling of 3.6 reads an hour: about one every 1,053 s per channel account.
    monkeypatch.setattr(FakeStatsChannel, "statistics_requests_per_hour", 3.6)
    a = await _one_shop(ctx, hub, merchant)
    b = await _one_shop(ctx, hub, merchant)
    sent = [await a.send(name=f"a{n}") for n in range(3)] + [
        await b.send(name=f"b{n}") for n in range(3)
    ]
    a.clock.shift += HOUR
    one, two = Collector(ctx, hub), Collector(ctx, hub)
    claimed = await asyncio.gather(one.collect_due(), two.collect_due())
    assert sum(claimed) == 2  # one read per channel, whichever replica made it
    assert await one.collect_due() == 0 and await two.collect_due() == 0  # paced
    await one.idle()
    await two.idle()
    reads = a.ledger.statistics_reads + b.ledger.statistics_reads
    assert len(reads) == 2 and len({u for u, _ in reads}) == 2
    assert len(a.ledger.statistics_reads) == len(b.ledger.statistics_reads) == 1
    # One step of the pace later, each channel may be read once more: the most overdue next.
    a.clock.shift += timedelta(seconds=1060)
    claimed = await asyncio.gather(one.collect_due(), two.collect_due())
    assert sum(claimed) == 2
    await one.idle()
    await two.idle()
    assert len({u for u, _ in a.ledger.statistics_reads + b.ledger.statistics_reads}) == 4
    done = [await ctx.db.read(_row, s) for s in sent]
    assert sum(1 for r in done if r is not None and r["fetch_time"] is not None) == 4


async def test_a_dead_replicas_claim_comes_due_again_and_a_stopped_one_hands_back(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    shop.clock.shift += HOUR
    now = ctx.now()
    (dead,) = await ctx.db.write(
        repo.claim, owner="dead", now=now, lease_until=now + timedelta(seconds=120), limit=5
    )
    assert dead.broadcast == broadcast
    alive = Collector(ctx, hub)
    shop.clock.shift += timedelta(seconds=60)  # the pace allows a read; the lease holds
    assert await alive.collect_due() == 0
    shop.clock.shift += timedelta(seconds=61)  # the lease lapsed: read once, by the living
    assert await alive.collect_due() == 1
    await alive.idle()
    assert len(shop.ledger.statistics_reads) == 1
    # The dead replica's late write changes nothing.
    assert not await ctx.db.write(repo.record_figures, dead, "dead", None, ctx.now(), None)
    # A replica that stops hands its claims back at once.
    shop.clock.shift += HOUR
    stopping = Collector(ctx, hub)
    now = ctx.now()
    claims = await ctx.db.write(
        repo.claim, owner=stopping.owner, now=now, lease_until=now + HOUR, limit=5
    )
    await ctx.db.write(repo.release, claims, stopping.owner, now)
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["lease_owner"] == "" and row["next_fetch_time"] == to_us(now)


async def test_a_replica_stopping_mid_read_hands_the_read_back(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    shop.ledger.statistics_script[:] = ["slow"]
    shop.clock.shift += HOUR
    stopping = Collector(ctx, hub)
    assert await stopping.collect_due() == 1
    async with asyncio.timeout(5):
        while True:  # until the read is under way at the channel
            if shop.ledger.statistics_reads:
                break
            await asyncio.sleep(0.01)
    await stopping.stop()
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["lease_owner"] == "" and row["fetch_time"] is None
    assert from_us(int(str(row["next_fetch_time"]))) <= ctx.now()
    other = Collector(ctx, hub)
    shop.clock.shift += timedelta(seconds=10)  # the channel's pace allows the next read
    assert await other.collect_due() == 1
    await other.idle()
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["fetch_time"] is not None


async def test_an_unreachable_channel_is_read_later_never_dropped(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    shop.ledger.statistics_script[:] = ["unavailable", "unavailable"]
    collector = Collector(ctx, hub)
    shop.clock.shift += HOUR
    for backoff in (5, 10):
        await _read_once(collector)
        row = await ctx.db.read(_row, broadcast)
        assert row is not None and row["fetch_time"] is None
        due = from_us(int(str(row["next_fetch_time"])))
        assert timedelta(minutes=backoff - 1) < due - ctx.now() <= timedelta(minutes=backoff)
        assert await collector.collect_due() == 0  # the channel waits too
        shop.clock.shift += timedelta(minutes=backoff)
    await _read_once(collector)
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["fetch_time"] is not None and row["failures"] == 0


async def test_reads_follow_the_schedule_and_stop_after_the_window(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    collector = Collector(ctx, hub)
    shop.clock.shift += timedelta(days=2)  # past the first day: daily
    await _read_once(collector)
    row = await ctx.db.read(_row, broadcast)
    assert row is not None
    gap = from_us(int(str(row["next_fetch_time"]))) - ctx.now()
    assert timedelta(hours=23) < gap <= timedelta(days=1)
    shop.clock.shift += timedelta(days=13)  # past the 14-day window: the last read
    await _read_once(collector)
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["next_fetch_time"] is None
    assert await ctx.db.read(repo.next_due) is None  # nothing left to read


async def test_reads_failing_past_the_window_end_with_none_collected_and_say_so(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    other = await _one_shop(ctx, hub, merchant)  # another channel, read beside it
    read = await shop.send(name="read")
    never = await other.send(name="never read")
    collector = Collector(ctx, hub)
    shop.clock.shift += HOUR
    other.ledger.statistics_script[:] = ["none"]
    await _read_once(collector, 2)  # `read` gets figures, `never` none yet
    # Unreachable for longer than the window and its grace: the reads are given up.
    shop.clock.shift += timedelta(days=15)
    for ledger in (shop.ledger, other.ledger):
        ledger.statistics_script[:] = ["unavailable"]
    await _read_once(collector, 2)
    for broadcast, reason in ((read, ""), (never, Reason.STATISTICS_NOT_COLLECTED)):
        row = await ctx.db.read(_row, broadcast)
        assert row is not None and row["next_fetch_time"] is None
        assert row["unavailable_reason"] == reason
        stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
        assert stats.unavailable_reason == reason
        assert (stats.figures is None) == bool(reason)
    shop.clock.shift += timedelta(days=1)
    assert await collector.collect_due() == 0
    assert await ctx.db.read(repo.next_due) is None  # nothing left to read


async def test_reads_failing_within_the_grace_are_tried_again(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    collector = Collector(ctx, hub)
    shop.clock.shift += timedelta(days=14, hours=12)  # past the window, within its grace
    shop.ledger.statistics_script[:] = ["unavailable"]
    await _read_once(collector)
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["next_fetch_time"] is not None
    assert row["unavailable_reason"] == ""
    shop.clock.shift += timedelta(minutes=5)
    await _read_once(collector)  # read at last: the window's end, so the last read
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["fetch_time"] is not None and row["next_fetch_time"] is None
    assert row["unavailable_reason"] == ""


async def test_a_channel_with_no_figures_by_the_window_end_has_none_collected(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    collector = Collector(ctx, hub)
    shop.clock.shift += HOUR
    shop.ledger.statistics_script[:] = ["none"]
    await _read_once(collector)
    name = f"{shop.parent}/broadcasts/{broadcast}"
    assert (await shop.broadcasts.statistics(LOCAL, name)).unavailable_reason == (
        Reason.STATISTICS_NOT_YET
    )
    shop.clock.shift += timedelta(days=14)
    shop.ledger.statistics_script[:] = ["none"]
    await _read_once(collector)  # the last read, and still none
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["next_fetch_time"] is None
    stats = await shop.broadcasts.statistics(LOCAL, name)
    assert stats.figures is None
    assert stats.unavailable_reason == Reason.STATISTICS_NOT_COLLECTED


async def test_a_disconnected_channels_broadcast_without_figures_has_none_collected(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    shop = await _one_shop(ctx, hub, merchant)
    broadcast = await shop.send()
    await Channels(ctx, hub).delete(LOCAL, shop.channel)
    shop.clock.shift += HOUR
    await _read_once(Collector(ctx, hub))
    row = await ctx.db.read(_row, broadcast)
    assert row is not None and row["next_fetch_time"] is None
    stats = await shop.broadcasts.statistics(LOCAL, f"{shop.parent}/broadcasts/{broadcast}")
    assert stats.unavailable_reason == Reason.STATISTICS_NOT_COLLECTED


async def test_a_broadcast_that_fails_with_batches_accepted_after_its_first_is_collected(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    """Its first batch refused for good while the next ones were on their way: the broadcast
    fails, never completing, and its statistics row is written by those all the same."""
    shop = await _one_shop(ctx, hub, merchant, send_delay_ms="1000")
    shop.ledger.script[:] = ["reject"]
    broadcast = await shop.send()
    name = f"{shop.parent}/broadcasts/{broadcast}"
    assert (await shop.broadcasts.get(LOCAL, name)).state is BroadcastState.FAILED
    async with asyncio.timeout(10):  # until the two later batches are recorded
        while True:
            row = await ctx.db.read(_row, broadcast)
            if row is not None:
                break
            await asyncio.sleep(0.02)
    # They went out under the unit: batch 1 (50), and batch 2 (20) unless the refusal of
    # batch 0 came back before its slot.
    assert sum(shop.ledger.units.values()) in (50, 70)
    assert row is not None and row["unit"] == f"b{broadcast}" and row["unavailable_reason"] == ""
    assert row["next_fetch_time"] is not None
    shop.clock.shift += HOUR
    await _read_once(Collector(ctx, hub))
    stats = await shop.broadcasts.statistics(LOCAL, name)
    assert stats.figures is not None and stats.unavailable_reason == ""


async def test_a_claim_takes_no_more_channels_than_its_limit(db: Database) -> None:
    """On PostgreSQL too, where a locking subquery in `IN (…)` could be run again per row and
    take every due channel: at most `limit` reads are claimed at once."""
    early = datetime(1971, 1, 1, tzinfo=UTC)  # nothing of the other tests is due this early
    channels = [f"limit-{uuid.uuid4().hex[:12]}" for _ in range(200)]

    def seed(conn: Connection) -> None:
        for n, channel in enumerate(channels):
            conn.execute(
                text(
                    "INSERT INTO broadcast_statistics (broadcast_id, channel_id, unit, send_time,"
                    " next_fetch_time) VALUES (:b, :ch, 'u', :t, :t)"
                ),
                {"b": f"{channel}-b{n}", "ch": channel, "t": to_us(early)},
            )
            conn.execute(
                text(
                    "INSERT INTO statistics_pacing (channel_id, next_time, step) VALUES (:ch, 0, 1)"
                ),
                {"ch": channel},
            )

    def clean(conn: Connection) -> None:
        for table in ("broadcast_statistics", "statistics_pacing"):
            conn.execute(text(f"DELETE FROM {table} WHERE channel_id LIKE 'limit-%'"))

    await db.write(seed)
    try:
        now = early + timedelta(hours=1)
        until = now + timedelta(minutes=5)
        first = await db.write(repo.claim, owner="a", now=now, lease_until=until, limit=2)
        assert len(first) == 2 and {c.channel for c in first} <= set(channels)
        rest = await db.write(repo.claim, owner="b", now=now, lease_until=until, limit=10)
        ours = {c.channel for c in rest} & set(channels)
        assert len(ours) == 10 and not ours & {c.channel for c in first}
    finally:
        await db.write(clean)


async def test_a_group_commit_notes_every_broadcasts_statistics_at_once(db: Database) -> None:
    """`noted` for the broadcasts of one group commit, in two statements: a row for each first,
    none for a broadcast whose first is behind it, the pace of each reporting channel, and a
    reason kept only where none was before."""
    key = uuid.uuid4().hex[:12]
    when = datetime(2026, 6, 1, tzinfo=UTC)
    due = when + HOUR
    counted = repo.Tag(unit="u", first_fetch=due, step_us=5_000_000)
    plain = repo.Tag()  # a channel that keeps no statistics

    def rows(conn: Connection) -> dict[str, tuple[str, str, int | None]]:
        found = conn.execute(
            text(
                "SELECT broadcast_id, unit, unavailable_reason, next_fetch_time"
                " FROM broadcast_statistics WHERE channel_id LIKE :k"
            ),
            {"k": f"noted-{key}-%"},
        )
        return {str(b): (str(u), str(r), n) for b, u, r, n in found}

    def steps(conn: Connection) -> dict[str, int]:
        found = conn.execute(
            text("SELECT channel_id, step FROM statistics_pacing WHERE channel_id LIKE :k"),
            {"k": f"noted-{key}-%"},
        )
        return {str(c): int(s) for c, s in found}

    def clean(conn: Connection) -> None:
        for table in ("broadcast_statistics", "statistics_pacing"):
            conn.execute(
                text(f"DELETE FROM {table} WHERE channel_id LIKE :k"), {"k": f"noted-{key}-%"}
            )

    a, b, c = (f"noted-{key}-{n}" for n in "abc")
    try:
        await db.write(
            repo.noted,
            [
                repo.Noted(f"{a}-1", a, [counted, counted], first=True),
                repo.Noted(f"{b}-1", b, [counted], first=True),
                repo.Noted(f"{b}-2", b, [counted], first=False),  # its row came earlier
                repo.Noted(f"{c}-1", c, [plain], first=True),
            ],
            when,
        )
        assert await db.read(rows) == {
            f"{a}-1": ("u", "", to_us(due)),
            f"{b}-1": ("u", "", to_us(due)),
            f"{c}-1": ("", Reason.STATISTICS_NOT_SUPPORTED, None),
        }
        assert await db.read(steps) == {a: 5_000_000, b: 5_000_000}
        # Later batches: one went out without its unit (the reason stays, the reads stop);
        # the channel that keeps none says nothing new.
        used_up = repo.Tag(unit="u", unavailable=Reason.STATISTICS_ALLOWANCE_USED_UP)
        await db.write(
            repo.noted,
            [
                repo.Noted(f"{a}-1", a, [counted, used_up], first=False),
                repo.Noted(f"{c}-1", c, [plain], first=True),
            ],
            when,
        )
        found = await db.read(rows)
        assert found[f"{a}-1"] == ("u", Reason.STATISTICS_ALLOWANCE_USED_UP, None)
        assert found[f"{c}-1"] == ("", Reason.STATISTICS_NOT_SUPPORTED, None)
        assert await db.read(steps) == {a: 5_000_000, b: 5_000_000}
    finally:
        await db.write(clean)
