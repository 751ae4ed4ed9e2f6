"""A page of Message Center events is built a few hundred at a time, giving the event loop back
between them: sends to a channel, whose rate slots are milliseconds apart, go meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from broadcaster.api.events import AT_ONCE, _events_into
from broadcaster.domain.deliveries import Event, EventKind, EventPosition
from broadcaster.v1 import event_service_pb2 as pb


def _events(count: int) -> list[Event]:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    return [
        Event(
            EventPosition(1, seq, 1),
            "m1",
            "ch1",
            f"c{seq}",
            "b1",
            EventKind.BROADCAST_MESSAGE,
            when,
        )
        for seq in range(count)
    ]


async def test_a_page_is_built_in_turns_with_the_rest_of_the_loop() -> None:
    found = _events(5 * AT_ONCE)
    cursors = [f"cursor-{n}" for n in range(len(found))]
    turns = 0
    building = True

    async def other_work() -> None:
        nonlocal turns
        while building:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)  # it has started
    started = turns
    page = pb.ListEventsResponse()
    await _events_into(page.events.add, found, cursors)
    building = False
    await other
    assert turns - started >= 4  # between each of the five parts
    assert [e.cursor for e in page.events] == cursors
    names = [f"merchants/m1/channels/ch1/contacts/c{n}" for n in range(len(found))]
    assert [e.contact for e in page.events] == names
