"""Message Center events: list after a cursor, or watch (history, then new events as they come).

Watchers wake when this process records events (`EventFeed.notify`) and otherwise poll, so events
recorded by another replica arrive within POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator

from broadcaster.domain.auth import Caller
from broadcaster.domain.deliveries import START, Event, EventPosition
from broadcaster.domain.errors import FieldViolation, InvalidArgument, Violations, collect
from broadcaster.domain.names import MerchantName
from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.services.listing import open_list
from broadcaster.store import events as repo

DEFAULT_PAGE, MAX_PAGE = 100, 1000
POLL_SECONDS = 0.5
WATCH_BATCH = 500


def encode_cursor(position: EventPosition) -> str:
    return base64.urlsafe_b64encode(f"ev{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> EventPosition:
    if not cursor:
        return START
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if raw.startswith("ev"):
            return EventPosition.parse(raw[2:])
    except (ValueError, UnicodeError, binascii.Error):
        pass
    raise InvalidArgument(
        [FieldViolation(field, "is not a cursor this service issued")], reason=Reason.INVALID_CURSOR
    )


class EventFeed:
    """Wakes watchers when this process records events."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until events are recorded here, or `seconds` pass (other replicas record too)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()


class Events:
    def __init__(self, ctx: ServiceContext, feed: EventFeed) -> None:
        self._ctx = ctx
        self.feed = feed

    async def list_page(
        self, caller: Caller, parent: str, page_size: int, page_token: str, after_cursor: str
    ) -> tuple[list[Event], str]:
        v = Violations()
        start = collect(v, lambda: decode_cursor(after_cursor, "after_cursor"))
        shape = ("events", after_cursor)
        merchant, page, query = open_list(
            self._ctx.pages,
            caller,
            v,
            parent,
            page_size,
            page_token,
            shape,
            default=DEFAULT_PAGE,
            maximum=MAX_PAGE,
        )
        assert start is not None
        after = start if page.after is None else decode_cursor(page.after, "page_token")
        found = await self._ctx.db.read(repo.after, merchant, after, page.size + 1)
        keys = [encode_cursor(e.position) for e in found]
        return found[: page.size], self._ctx.pages.next(keys, page, query)

    async def watch(self, caller: Caller, parent: str, after_cursor: str) -> AsyncIterator[Event]:
        v = Violations()
        merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
        position = collect(v, lambda: decode_cursor(after_cursor, "after_cursor"))
        v.raise_if_any()
        assert merchant is not None and position is not None
        caller.require(merchant.merchant)
        while True:
            found = await self._ctx.db.read(repo.after, merchant.merchant, position, WATCH_BATCH)
            for event in found:
                yield event
                position = event.position
            if len(found) < WATCH_BATCH:
                await self.feed.wait(POLL_SECONDS)
