"""Message Center events: list after a cursor, or watch (history, then new events as they come).

Watchers do not poll. The feed keeps, per merchant being watched, the last outbox row known to
be written, and a watcher that has read everything waits until that moves. It moves when this
process records events (`EventFeed.notify`, from the engine), when PostgreSQL notifies that any
replica recorded them (heard on the process's `store.notifications.Listener` from the first
watcher on), and on a slow safety poll: each time, one statement reads the last row of every
merchant concerned, and only the watchers of merchants with new rows read. An idle watcher
costs no statement at all between safety polls.

A merchant may hold a limited number of watch streams on each replica (TOO_MANY_STREAMS beyond).

Readers may ask for some kinds only, or one broadcast's events only: the store reads only the
rows that can hold them (a lifecycle-only reader reads no recipient row). A broadcast filter must
name a broadcast of the merchant (NOT_FOUND otherwise, as for any name of another merchant's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator

from sqlalchemy import Connection

from broadcaster.domain.auth import Caller
from broadcaster.domain.deliveries import EVERY_EVENT, Event, EventFilter, EventKind, EventPosition
from broadcaster.domain.errors import (
    QuotaViolation,
    ResourceExhausted,
    Violations,
    collect,
)
from broadcaster.domain.names import BroadcastName, MerchantName
from broadcaster.domain.reasons import Reason
from broadcaster.services.broadcasts import not_found
from broadcaster.services.context import ServiceContext
from broadcaster.services.event_cursors import EventCursors
from broadcaster.services.listing import open_list
from broadcaster.store import broadcasts as broadcast_repo
from broadcaster.store import events as repo
from broadcaster.store.notifications import Listener, Subscription

log = logging.getLogger(__name__)
DEFAULT_PAGE, MAX_PAGE = 100, 1000
SAFETY_POLL_SECONDS = 5.0
# While a channel sends, its recordings (up to 200 a second) would each wake the feed: one
# refresh per window takes in all of them, so watchers read fewer, larger steps.
COALESCE_SECONDS = 0.05
# Events per read of a watcher: small enough that encoding a step holds the event loop (and the
# sending engine's pacing on it) for about two milliseconds, large enough that a watcher reads
# more than 100,000 events a second on PostgreSQL (at 250 a read, ~90,000: each read's own
# cost, a statement and a hop to a database thread and back, was spent twice as often).
WATCH_BATCH = 500
STREAMS_PER_MERCHANT = 16


class EventFeed:
    """Tells watchers of a merchant that its events moved on, with one statement per wake-up
    for all merchants watched in this process."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        poll_seconds: float = SAFETY_POLL_SECONDS,
        streams_per_merchant: int = STREAMS_PER_MERCHANT,
        listener: Listener | None = None,
    ) -> None:
        """`listener`: the process's PostgreSQL listener, shared with the dispatcher (by default
        the feed opens one of its own when it first needs it)."""
        self._ctx = ctx
        self._subscription = Subscription(ctx.db, repo.NOTIFY_CHANNEL, self.notify, listener)
        self._poll = poll_seconds
        self.streams_per_merchant = streams_per_merchant
        self._streams: Counter[str] = Counter()
        self._heads: dict[str, int] = {}  # merchant -> last outbox row known written
        self._moved: dict[str, asyncio.Event] = {}
        self._dirty: set[str] = set()
        self._all_dirty = False
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        ctx.events_recorded = self.notify  # lifecycle events recorded outside the dispatcher

    def notify(self, merchant: str | None = None) -> None:
        """Events were recorded: for `merchant`, or (None) for any merchant."""
        if merchant is None:
            self._all_dirty = True
        elif merchant in self._streams:
            self._dirty.add(merchant)
        else:
            return
        self._kick.set()

    def head(self, merchant: str) -> int:
        """The last outbox row known written for `merchant` (-1: not known yet)."""
        return self._heads.get(merchant, -1)

    async def wait(self, merchant: str, seen: int) -> None:
        """Until `merchant`'s last row is known to be past `seen`."""
        while self._heads.get(merchant, -1) <= seen:
            moved = self._moved.get(merchant)
            if moved is None:
                moved = self._moved[merchant] = asyncio.Event()
            await moved.wait()

    @contextlib.contextmanager
    def stream(self, merchant: str) -> Iterator[None]:
        """Hold one of `merchant`'s watch streams; refused beyond the limit."""
        if self._streams[merchant] >= self.streams_per_merchant:
            raise ResourceExhausted(
                f"merchants/{merchant} already has {self.streams_per_merchant} WatchEvents "
                "streams open on this server",
                reason=Reason.TOO_MANY_STREAMS,
                quota=[
                    QuotaViolation(
                        f"merchants/{merchant}",
                        f"at most {self.streams_per_merchant} WatchEvents streams at once",
                    )
                ],
                limit=str(self.streams_per_merchant),
            )
        self._start()
        self._streams[merchant] += 1
        self._dirty.add(merchant)  # learn its head
        self._kick.set()
        try:
            yield
        finally:
            self._streams[merchant] -= 1
            if not self._streams[merchant]:
                del self._streams[merchant]
                self._heads.pop(merchant, None)
                self._moved.pop(merchant, None)

    def _start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._refresh(), name="event-feed"))
        self._subscription.start()

    async def close(self) -> None:
        await self._subscription.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _refresh(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._poll):
                    await self._kick.wait()
            except TimeoutError:
                self._all_dirty = True  # the safety poll: a notification may have been lost
            await asyncio.sleep(COALESCE_SECONDS)
            self._kick.clear()
            watched = self._streams.keys()
            merchants = (
                list(watched) if self._all_dirty else [m for m in self._dirty if m in watched]
            )
            self._all_dirty = False
            self._dirty.clear()
            if not merchants:
                continue
            try:
                heads = await self._ctx.db.read(repo.heads, merchants)
            except Exception:
                log.exception("event feed: reading the merchants' last rows failed")
                self._all_dirty = True
                await asyncio.sleep(1.0)
                self._kick.set()
                continue
            for merchant, head in heads.items():
                if head > self._heads.get(merchant, -1) and merchant in self._streams:
                    self._heads[merchant] = head
                    moved = self._moved.pop(merchant, None)
                    if moved is not None:
                        moved.set()


class Events:
    def __init__(self, ctx: ServiceContext, feed: EventFeed, cursors: EventCursors) -> None:
        self._ctx = ctx
        self.feed = feed
        self._cursors = cursors

    async def list_page(
        self,
        caller: Caller,
        parent: str,
        page_size: int,
        page_token: str,
        after_cursor: str,
        kinds: frozenset[EventKind] | None = None,
        broadcast: str = "",
    ) -> tuple[list[Event], list[str], str]:
        """A page of events (of `kinds`, None: all; of `broadcast`, "": all), their cursors, and
        the next page's token."""
        v = Violations()
        by = collect(v, lambda: BroadcastName.parse(broadcast, "broadcast")) if broadcast else None
        shape = ("events", after_cursor, sorted(int(k) for k in kinds or ()), broadcast)
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
        start = self._cursors.open(merchant, after_cursor, "after_cursor")
        after = (
            start if page.after is None else self._cursors.open(merchant, page.after, "page_token")
        )
        wanted = await self._filter(merchant, kinds, by, broadcast)
        found, cursors = await self._read(merchant, after, page.size + 1, wanted)
        return found[: page.size], cursors[: page.size], self._ctx.pages.next(cursors, page, query)

    async def watch(
        self,
        caller: Caller,
        parent: str,
        after_cursor: str,
        kinds: frozenset[EventKind] | None = None,
        broadcast: str = "",
    ) -> AsyncIterator[tuple[list[Event], list[str]]]:
        """The merchant's events after the cursor (of `kinds`, of `broadcast`, as list_page), in
        batches with their cursors: those recorded already, then new ones as they are recorded,
        until the caller goes."""
        v = Violations()
        name = collect(v, lambda: MerchantName.parse(parent, "parent"))
        by = collect(v, lambda: BroadcastName.parse(broadcast, "broadcast")) if broadcast else None
        v.raise_if_any()
        assert name is not None
        merchant = name.merchant
        caller.require(merchant)
        position: EventPosition = self._cursors.open(merchant, after_cursor, "after_cursor")
        wanted = await self._filter(merchant, kinds, by, broadcast)
        with self.feed.stream(merchant):
            read: asyncio.Future[tuple[list[Event], list[str]]] | None = None
            try:
                while True:
                    if read is None:
                        seen = self.feed.head(merchant)  # before the read: rows up to it are seen
                        read = asyncio.ensure_future(
                            self._read(merchant, position, WATCH_BATCH, wanted)
                        )
                    found, cursors = await read
                    read = None
                    if found:
                        position = found[-1].position
                        if len(found) == WATCH_BATCH:  # more waiting: read on while this goes out
                            seen = self.feed.head(merchant)
                            read = asyncio.ensure_future(
                                self._read(merchant, position, WATCH_BATCH, wanted)
                            )
                        yield found, cursors
                    if len(found) < WATCH_BATCH:
                        await self.feed.wait(merchant, max(seen, position.row))
            finally:
                if read is not None:
                    read.cancel()

    async def _filter(
        self,
        merchant: str,
        kinds: frozenset[EventKind] | None,
        by: BroadcastName | None,
        name: str,
    ) -> EventFilter:
        """What the reader asked for; NOT_FOUND for a broadcast the merchant does not have."""
        if by is None:
            return EVERY_EVENT if kinds is None else EventFilter(kinds)
        if by.merchant != merchant or not await self._ctx.db.read_point(
            broadcast_repo.get, merchant, by.broadcast
        ):
            raise not_found(name)
        return EventFilter(kinds, by.broadcast)

    async def _read(
        self, merchant: str, position: EventPosition, limit: int, wanted: EventFilter
    ) -> tuple[list[Event], list[str]]:
        """The events after `position`, with their cursors: sealed on the thread that read them,
        not on the event loop (a thousand at a time held it up for the sends under way)."""

        def read(conn: Connection) -> tuple[list[Event], list[str]]:
            found = repo.after(conn, merchant, position, limit, wanted)
            return found, self._cursors.seal(merchant, [e.position for e in found])

        return await self._ctx.db.read(read)
