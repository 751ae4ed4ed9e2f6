"""The Message Center outbox: events for delivered recipients only, a conversation-created
event the first time, and a cursor that resumes without gaps or repeats. Watchers are woken by
recorded events (in this process, or through PostgreSQL from another replica), not by polling:
idle ones issue no statement; a merchant's streams are capped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text, update

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Counters
from broadcaster.domain.deliveries import (
    LIFECYCLE_KINDS,
    START,
    DeliveryOutcome,
    Event,
    EventFilter,
    EventKind,
    EventPosition,
)
from broadcaster.domain.errors import ResourceExhausted
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ContactFilter, ContactImport, FollowerState
from broadcaster.domain.paging import Page
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.services.event_cursors import EventCursors
from broadcaster.services.events import EventFeed, Events
from broadcaster.store import batch_recipients, channels, contacts, events, snapshot
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.store.tables import batches
from tests.integration.recipients_rig import resolve
from tests.integration.test_sending import _shop

CURSORS = EventCursors(["integration-secret-key-0123456789abcdef"])
NEVER = 3600.0  # a safety poll that never fires during a test


def _contacts(conn, merchant: str, channel: str, people: int, chatted: set[int]) -> None:  # type: ignore[no-untyped-def]
    """A connected channel of `merchant` with `people` contacts (U000, U001, …), those numbered
    in `chatted` having had a conversation."""
    channels.create(
        conn, merchant, channel, "fake", (AccountTier.VERIFIED, channel, "", "", ""), "x",
        from_us(1),
    )  # fmt: skip
    items = [
        ContactImport(f"U{n:03d}", "", "", FollowerState.FOLLOWING, None, False, None, from_us(1))
        for n in range(people)
    ]
    contacts.merge(conn, merchant, channel, items, from_us(1))
    conn.execute(
        update(contacts.t)
        .where(contacts.t.c.external_id.in_([f"U{n:03d}" for n in chatted]))
        .values(has_conversation=True)
    )


async def _delivered(db: Database, merchant: str, people: int, chatted: set[int]) -> str:
    """A broadcast to `people` contacts whose recipients 0..people-1 were all sent to."""
    channel, broadcast = new_id(), new_id()

    def seed(conn):  # type: ignore[no-untyped-def]
        _contacts(conn, merchant, channel, people, chatted)
        snapshot.take(
            conn, merchant=merchant, channel=channel, broadcast=broadcast, since=None,
            group=None, batch_size=4, now=from_us(1),
        )  # fmt: skip
        # Recipient 1 was refused by the channel; the rest were sent with their batches.
        conn.execute(update(batches).where(batches.c.broadcast_id == broadcast).values(state=1))
        resolve(conn, broadcast, [1], DeliveryOutcome.FAILED)
        for lo in range(0, people, 4):
            events.record_delivered(
                conn, merchant=merchant, channel=channel, broadcast=broadcast,
                spans=[(lo, min(lo + 3, people - 1))], now=2,
            )  # fmt: skip
        return broadcast

    return str(await db.write(seed))


async def test_events_for_delivered_recipients(db: Database, merchant: str) -> None:
    await _delivered(db, merchant, 10, chatted={0, 2})
    found = await db.read(events.after, merchant, START, 100)
    created = [e for e in found if e.kind is EventKind.CONVERSATION_CREATED]
    shown = [e for e in found if e.kind is EventKind.BROADCAST_MESSAGE]
    assert len(shown) == 9  # everyone but the refused recipient
    assert len(created) == 7  # not those who had chatted, nor the refused one
    assert [e.position for e in found] == sorted(e.position for e in found)
    # The first broadcast message to a contact comes after its conversation was created.
    first_created = {e.contact: e.position for e in created}
    assert all(first_created.get(e.contact, START) < e.position for e in shown)
    stored = await db.read(
        contacts.list_page, merchant, found[0].channel, ContactFilter(), Page(1000, None)
    )
    assert sum(c.has_conversation for c in stored) == 9


def _chatted(conn, channel: str, external_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        update(contacts.t)
        .where(contacts.t.c.channel_id == channel)
        .where(contacts.t.c.external_id.in_(external_ids))
        .values(has_conversation=True)
    )


def _conversations_of(conn, broadcast: str) -> int:  # type: ignore[no-untyped-def]
    found = conn.execute(
        text("SELECT COUNT(*) FROM conversations WHERE broadcast_id = :b"), {"b": broadcast}
    )
    return int(found.scalar_one())


@pytest.mark.parametrize("talked", ["every", "half"])
async def test_a_send_to_contacts_who_had_conversations_opens_none_for_them(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, talked: str
) -> None:
    """Sent and recorded by the dispatcher: each recipient gets the broadcast's message, and a
    conversation is created for those who had none, only. A repeat send to an audience whose
    every contact had one writes the outbox rows alone (no seqs matched one by one)."""
    async for shop in _shop(ctx, hub, merchant, 1000):
        chatted = shop.people if talked == "every" else shop.people[::2]
        await ctx.db.write(_chatted, shop.channel_id, chatted)
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        done = await shop.finished(name)
        assert done.counters.sent == 1000
        found = await ctx.db.read(events.after, merchant, START, 5000)
        mine = [e for e in found if e.broadcast == done.id]
        messages = [e for e in mine if e.kind is EventKind.BROADCAST_MESSAGE]
        created = [e for e in mine if e.kind is EventKind.CONVERSATION_CREATED]
        assert len(messages) == 1000 and len({e.contact for e in messages}) == 1000
        assert len(created) == 1000 - len(chatted) == len({e.contact for e in created})
        written = await ctx.db.read(_conversations_of, done.id)
        assert written == 1000 - len(chatted)


_recording = st.fixed_dictionaries(
    {
        "people": st.integers(1, 14),
        "chatted": st.sets(st.integers(0, 13)),
        "sizes": st.tuples(st.integers(1, 4), st.integers(1, 4)),  # each broadcast's batches
        "refused": st.tuples(st.sets(st.integers(0, 13)), st.sets(st.integers(0, 13))),
        "order": st.randoms(use_true_random=False),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_recording)
async def test_runs_recorded_together_read_as_recorded_one_by_one(
    db: Database,
    case: dict,  # type: ignore[type-arg]
) -> None:
    """SQLite: two broadcasts to the same contacts (some of whom had a conversation; some
    recipients refused one by one), their batches recorded in groups in a random order, give
    the same Message Center events recorded together (`record_delivered_together`, a few
    statements a group) as recorded range by range (`record_delivered`)."""
    if not events.together(db.dialect):
        pytest.skip("PostgreSQL records each broadcast's ranges under its merchant's lock")
    people = case["people"]
    chatted = {n for n in case["chatted"] if n < people}
    # Each broadcast's batches (all its contacts follow), recorded in groups, in a random order.
    every = [(b, n) for b, size in enumerate(case["sizes"]) for n in range(-(-people // size))]
    case["order"].shuffle(every)
    cut = sorted(case["order"].sample(range(1, len(every)), min(3, len(every) - 1)))
    groups = [every[i:j] for i, j in zip([0, *cut], [*cut, len(every)], strict=True)]
    streams = [await _recorded(db, case, chatted, groups, together) for together in (False, True)]
    assert streams[0] == streams[1]
    # Everyone not refused got each broadcast's message, and no contact two conversations.
    messages = [b for kind, _, b in streams[1] if kind is EventKind.BROADCAST_MESSAGE]
    assert [messages.count(b) for b in range(2)] == [
        people - len({n for n in refused if n < people}) for refused in case["refused"]
    ]
    opened = [who for kind, who, _ in streams[1] if kind is EventKind.CONVERSATION_CREATED]
    assert len(opened) == len(set(opened))
    assert not set(opened) & {f"U{n:03d}" for n in chatted}


async def _recorded(
    db: Database,
    case: dict,  # type: ignore[type-arg]
    chatted: set[int],
    groups: list[list[tuple[int, int]]],
    together: bool,
) -> list[tuple[EventKind, str, int]]:
    """`test_runs_recorded_together_read_as_recorded_one_by_one`'s case on a merchant of its
    own, recorded together or range by range: its events as (kind, external id, broadcast)."""
    people = case["people"]
    merchant, channel = f"m-{new_id()}", new_id()
    names = [new_id(), new_id()]

    def seed(conn):  # type: ignore[no-untyped-def]
        _contacts(conn, merchant, channel, people, chatted)
        for name, size, refused in zip(names, case["sizes"], case["refused"], strict=True):
            snapshot.take(
                conn, merchant=merchant, channel=channel, broadcast=name, since=None,
                group=None, batch_size=size, now=from_us(1),
            )  # fmt: skip
            resolve(conn, name, sorted(n for n in refused if n < people), DeliveryOutcome.FAILED)
        # Accepted: done, so that no dispatcher of another test finds work on this channel.
        conn.execute(update(batches).where(batches.c.broadcast_id.in_(names)).values(state=1))
        return _batches_of(conn, names)

    found = await db.write(seed)

    def record(conn, group):  # type: ignore[no-untyped-def]
        runs = []
        for b, n in sorted(group):
            first, last, talked, refused = found[b][n]
            skip = tuple(sorted(set(talked) | set(refused)))
            if together:
                runs.append(
                    events.DeliveredRun(merchant, channel, names[b], n, n, first, last, skip)
                )
            else:
                events.record_delivered(
                    conn, merchant=merchant, channel=channel, broadcast=names[b],
                    spans=[(first, last)], now=2, talked=talked,
                )  # fmt: skip
        events.record_delivered_together(conn, runs, 2)

    for group in groups:
        await db.write(record, group)
    stream = await db.read(events.after, merchant, START, 1000)
    listed = await db.read(contacts.list_page, merchant, channel, ContactFilter(), Page(1000, None))
    by_id = {c.id: c.external_id for c in listed}
    return [(e.kind, by_id[e.contact], names.index(e.broadcast)) for e in stream]


def _batches_of(conn, names: list[str]) -> list[list[tuple[int, int, list[int], list[int]]]]:  # type: ignore[no-untyped-def]
    """Per broadcast, its batches in order: (first seq, last seq, seqs noted as having had a
    conversation, seqs resolved one by one)."""
    source, arrays = batch_recipients.with_arrays(conn.dialect.name)
    made = []
    for name in names:
        rows = conn.execute(
            text(
                f"SELECT b.first_seq, b.size, {arrays}.talked FROM {source}"
                " WHERE b.broadcast_id = :b ORDER BY b.batch"
            ),
            {"b": name},
        ).all()
        resolved = {
            int(q)
            for (q,) in conn.execute(
                text("SELECT seq FROM deliveries WHERE broadcast_id = :b AND outcome <> 0"),
                {"b": name},
            )
        }
        made.append(
            [
                (
                    int(f),
                    int(f) + int(n) - 1,
                    json.loads(t),
                    sorted(q for q in resolved if int(f) <= q < int(f) + int(n)),
                )
                for f, n, t in rows
            ]
        )
    return made


async def test_cursor_pages_resume_exactly(ctx: ServiceContext, merchant: str) -> None:
    await _delivered(ctx.db, merchant, 25, chatted=set())
    service = Events(ctx, EventFeed(ctx), CURSORS)
    parent = f"merchants/{merchant}"
    seen, token = [], ""
    while True:
        page_, _, token = await service.list_page(LOCAL, parent, 7, token, "")
        seen += [e.position for e in page_]
        if not token:
            break
    everything = [e.position for e in await ctx.db.read(events.after, merchant, START, 1000)]
    assert seen == everything and len(seen) == 48
    middle = CURSORS.seal(merchant, [everything[19]])[0]
    rest, _, _ = await service.list_page(LOCAL, parent, 1000, "", middle)
    assert [e.position for e in rest] == everything[20:]


@contextmanager
def _transactions(db: Database) -> Iterator[list[str]]:
    """Every transaction begun on the service's database meanwhile (each read is one)."""
    seen: list[str] = []

    def began(conn: object) -> None:
        seen.append("begin")

    event.listen(db.engine, "begin", began)
    try:
        yield seen
    finally:
        event.remove(db.engine, "begin", began)


async def _next(stream: AsyncIterator[tuple[list[Event], list[str]]]) -> list[Event]:
    """The next batch; the timeout only keeps a broken wake-up from hanging the suite (the
    safety poll would take an hour)."""
    found, _ = await asyncio.wait_for(anext(stream), timeout=60)
    return found


async def _replica(database_url: str) -> AsyncIterator[Database]:
    other = Database.from_url(database_url, threads=1)
    try:
        yield other
    finally:
        other.close()


async def test_a_watcher_wakes_on_new_events_not_on_a_poll(
    ctx: ServiceContext, merchant: str, database_url: str
) -> None:
    """On SQLite the engine's signal wakes it; on PostgreSQL another replica's recording does
    (NOTIFY), with no signal in this process at all."""
    feed = EventFeed(ctx, poll_seconds=NEVER)
    service = Events(ctx, feed, CURSORS)
    await _delivered(ctx.db, merchant, 4, chatted={0, 1, 2, 3})
    stream = service.watch(LOCAL, f"merchants/{merchant}", "")
    try:
        assert len(await _next(stream)) == 3  # history: 4 recipients, 1 refused
        if ctx.db.dialect == "postgresql":
            async for other in _replica(database_url):
                await _delivered(other, merchant, 6, chatted=set())
        else:
            await _delivered(ctx.db, merchant, 6, chatted=set())
            feed.notify()  # what the engine does after recording
        fresh = await _next(stream)
        assert len(fresh) == 10 and {e.merchant for e in fresh} == {merchant}
    finally:
        await stream.aclose()
        await feed.close()


async def test_idle_watchers_issue_no_statements_and_share_a_wake_up(
    ctx: ServiceContext, merchant: str
) -> None:
    feed = EventFeed(ctx, poll_seconds=NEVER)
    service = Events(ctx, feed, CURSORS)
    await _delivered(ctx.db, merchant, 4, chatted=set())
    streams = [service.watch(LOCAL, f"merchants/{merchant}", "") for _ in range(4)]
    try:
        for stream in streams:
            assert len(await _next(stream)) == 6
        waiting = [asyncio.ensure_future(_next(s)) for s in streams]
        await asyncio.sleep(0.5)  # every watcher learns the merchant's last row, then waits
        with _transactions(ctx.db) as idle:
            await asyncio.sleep(1.0)
        assert idle == []
        await _delivered(ctx.db, merchant, 2, chatted=set())
        with _transactions(ctx.db) as woken:
            feed.notify()
            got = await asyncio.wait_for(asyncio.gather(*waiting), timeout=60)
        assert [len(found) for found in got] == [2] * 4
        # One statement for the merchant's last row, then each watcher's own read.
        assert len(woken) <= 1 + 4 + (ctx.db.dialect == "postgresql")
    finally:
        for stream in streams:
            await stream.aclose()
        await feed.close()


async def test_a_merchants_streams_are_capped(ctx: ServiceContext, merchant: str) -> None:
    feed = EventFeed(ctx, poll_seconds=NEVER, streams_per_merchant=2)
    service = Events(ctx, feed, CURSORS)
    await _delivered(ctx.db, merchant, 2, chatted=set())
    first, second, third = (service.watch(LOCAL, f"merchants/{merchant}", "") for _ in range(3))
    other = service.watch(LOCAL, "merchants/someone-else", "")
    try:
        await _next(first)
        await _next(second)
        with pytest.raises(ResourceExhausted) as refused:
            await _next(third)
        assert refused.value.reason == "TOO_MANY_STREAMS"
        assert refused.value.metadata == {"limit": "2"}
        waiting = asyncio.ensure_future(_next(other))  # other merchants are not held back
        await asyncio.sleep(0.2)
        assert not waiting.done()
        waiting.cancel()
        await first.aclose()  # a stream that ends gives its place back
        fourth = service.watch(LOCAL, f"merchants/{merchant}", "")
        assert len(await _next(fourth)) == 2
        await fourth.aclose()
    finally:
        for stream in (first, second, other):
            await stream.aclose()
        await feed.close()


async def test_filters_in_the_store(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> None:
    """Kinds and broadcast filters read the same events as the whole stream, less the others:
    a sent broadcast's lifecycle events alone, its recipients' of one kind, or none of another
    broadcast's."""
    db = ctx.db
    plain = await _delivered(db, merchant, 12, {3})
    async for shop in _shop(ctx, hub, merchant, 120, account=f"{merchant}-f"):
        name = await shop.draft()
        await shop.sending.send(LOCAL, name, "")
        done = await shop.finished(name)
    everything = await db.read(events.after, merchant, START, 1000)

    def expected(keep: EventFilter) -> list[EventPosition]:
        return [
            e.position
            for e in everything
            if (keep.kinds is None or e.kind in keep.kinds)
            and keep.broadcast in (None, e.broadcast)
        ]

    filters = [
        EventFilter(frozenset({EventKind.BROADCAST_SENDING, EventKind.BROADCAST_SENT})),
        EventFilter(frozenset({EventKind.BROADCAST_SENT}), done.id),
        EventFilter(frozenset({EventKind.CONVERSATION_CREATED})),
        EventFilter(frozenset({EventKind.BROADCAST_MESSAGE}), plain),
        EventFilter(frozenset({EventKind.BROADCAST_MESSAGE, EventKind.BROADCAST_SENT})),
        EventFilter(None, done.id),
        EventFilter(frozenset({EventKind.BROADCAST_FAILED})),
        EventFilter(None, "not-a-broadcast"),
    ]
    for keep in filters:
        found = await db.read(events.after, merchant, START, 1000, keep)
        assert [e.position for e in found] == expected(keep), keep
        # Resumed from each event found: the rest, exactly.
        for at in range(0, len(found), 37):
            rest = await db.read(events.after, merchant, found[at].position, 1000, keep)
            assert rest == found[at + 1 :]
    lifecycle = await db.read(events.after, merchant, START, 1000, filters[0])
    assert [(e.kind, e.contact, e.counters) for e in lifecycle] == [
        (EventKind.BROADCAST_SENDING, "", Counters(120, 0, 0, 0)),
        (EventKind.BROADCAST_SENT, "", done.counters),
    ]


@pytest.mark.parametrize(
    ("keep", "index"),
    [
        (EventFilter(frozenset({EventKind.BROADCAST_SENT})), "ix_outbox_lifecycle"),
        (EventFilter(None, "b"), "ix_outbox_broadcast"),
    ],
)
async def test_filtered_reads_use_their_index(db: Database, keep: EventFilter, index: str) -> None:
    """A lifecycle-only read takes the partial index of lifecycle rows, a broadcast's read the
    broadcast's index: neither reads the merchant's recipient rows."""

    def plan(conn):  # type: ignore[no-untyped-def]
        recipients, _ = keep.rows
        kinds = keep.kinds
        statement = events._rows_sql(
            conn.dialect.name,
            recipients,
            None if kinds is None else kinds & LIFECYCLE_KINDS,
            keep.broadcast is not None,
        )
        args = ["m", 0] + ([keep.broadcast] if keep.broadcast else []) + [64]
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            explain = "EXPLAIN " + statement
        else:
            explain = "EXPLAIN QUERY PLAN " + statement.replace("%s", "?")
        return " ".join(str(r) for r in conn.exec_driver_sql(explain, tuple(args)).all())

    assert index in await db.write(plan)
