"""The Message Center outbox: events for delivered recipients only, a conversation-created
event the first time, and a cursor that resumes without gaps or repeats."""

from __future__ import annotations

from sqlalchemy import update

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.deliveries import START, DeliveryOutcome, EventKind
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ContactFilter, ContactImport, FollowerState
from broadcaster.domain.paging import Page
from broadcaster.services.context import ServiceContext
from broadcaster.services.events import EventFeed, Events, encode_cursor
from broadcaster.store import channels, contacts, events, snapshot
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.store.tables import batches, deliveries


async def _delivered(db: Database, merchant: str, people: int, chatted: set[int]) -> str:
    """A broadcast to `people` contacts whose recipients 0..people-1 were all sent to."""
    channel, broadcast = new_id(), new_id()

    def seed(conn):  # type: ignore[no-untyped-def]
        channels.create(
            conn,
            merchant,
            channel,
            "fake",
            (AccountTier.VERIFIED, "a", "", "", ""),
            "x",
            from_us(1),
        )
        items = [
            ContactImport(
                f"U{n:03d}", "", "", FollowerState.FOLLOWING, None, False, None, from_us(1)
            )
            for n in range(people)
        ]
        contacts.merge(conn, merchant, channel, items, from_us(1))
        conn.execute(
            update(contacts.t)
            .where(contacts.t.c.external_id.in_([f"U{n:03d}" for n in chatted]))
            .values(has_conversation=True)
        )
        snapshot.take(
            conn, merchant=merchant, channel=channel, broadcast=broadcast, since=None,
            group=None, batch_size=4, now=from_us(1),
        )  # fmt: skip
        # Recipient 1 was refused by the channel; the rest were sent with their batches.
        conn.execute(update(batches).where(batches.c.broadcast_id == broadcast).values(state=1))
        conn.execute(
            update(deliveries)
            .where(deliveries.c.broadcast_id == broadcast, deliveries.c.seq == 1)
            .values(outcome=int(DeliveryOutcome.FAILED))
        )
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


async def test_cursor_pages_resume_exactly(ctx: ServiceContext, merchant: str) -> None:
    await _delivered(ctx.db, merchant, 25, chatted=set())
    service = Events(ctx, EventFeed())
    parent = f"merchants/{merchant}"
    seen, token = [], ""
    while True:
        page_, token = await service.list_page(LOCAL, parent, 7, token, "")
        seen += [e.position for e in page_]
        if not token:
            break
    everything = [e.position for e in await ctx.db.read(events.after, merchant, START, 1000)]
    assert seen == everything and len(seen) == 48
    middle = encode_cursor(everything[19])
    rest, _ = await service.list_page(LOCAL, parent, 1000, "", middle)
    assert [e.position for e in rest] == everything[20:]
