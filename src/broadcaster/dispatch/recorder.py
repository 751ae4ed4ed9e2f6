"""Group commit for batch outcomes.

At the channel's ceiling, outcomes arrive every few milliseconds (more with many channels
sending at once: one recorder serves them all); committing each alone would make the commit
(and, on PostgreSQL, the per-merchant events lock) the bottleneck. Outcomes
that arrive while a transaction is being written go into the next one together. Each outcome
is still recorded whole in one transaction with its counters and events (the invariants of
dispatch in docs/architecture.md); if a shared transaction fails, its outcomes are retried one
per transaction, so one bad outcome cannot hold the others back. Outcomes of one kind (accepted
batches) can be handed to one function together, which records them with a few set-based
statements instead of a few each.

On PostgreSQL several group commits run at once (`lanes`), each on a database connection and
server process of its own, so that recording can use more than one of the server's cores. An
outcome's lane is chosen by its key, the merchant: a merchant's outcomes share one lane, so two
lanes never wait for each other's hold on a merchant's events lock (store.events), nor take
two merchants' locks in opposite orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from broadcaster.store.database import Database, goes_first

Write = Callable[[Connection], Any]
Many = Callable[[Connection, list[Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class _Item:
    future: asyncio.Future[Any]
    write: Write | None = None  # a write of its own, or
    many: Many | None = None  # one of the items this writes all at once
    item: Any = None


class Recorder:
    def __init__(
        self, db: Database, *, most: int = 64, first: bool = False, lanes: int = 1
    ) -> None:
        """`first`: its transactions go first (store.database.goes_first); `lanes`: group
        commits that may run at once."""
        self._lanes = [_Lane(db, most=most, first=first) for _ in range(max(1, lanes))]

    def _lane(self, key: str) -> _Lane:
        if len(self._lanes) == 1:
            return self._lanes[0]
        return self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]

    async def write(self, fn: Callable[..., Any], *args: Any, key: str = "") -> Any:
        """Run `fn(conn, *args)` in a transaction, possibly shared with other outcomes of the
        lane of `key`; returns its result."""
        return await self._lane(key).write(fn, *args)

    async def write_together(self, fn: Many, item: Any, *, key: str = "") -> Any:
        """Have `fn(conn, items)` record `item` in a transaction, possibly shared; the items
        queued for the same `fn` in the lane of `key` meanwhile go to one call, which returns a
        result per item. Returns this item's."""
        return await self._lane(key).write_together(fn, item)

    async def close(self) -> None:
        for lane in self._lanes:
            await lane.close()


class _Lane:
    """One group commit: the outcomes queued while a transaction is written go into the next."""

    def __init__(self, db: Database, *, most: int, first: bool) -> None:
        self._db = db
        self._first = first
        self._most = most
        self._queue: list[_Item] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` in a transaction, possibly shared with other outcomes; returns
        its result."""
        return await self._queued(lambda future: _Item(future, write=lambda c: fn(c, *args)))

    async def write_together(self, fn: Many, item: Any) -> Any:
        """Have `fn(conn, items)` record `item` in a transaction, possibly shared; the items
        queued for the same `fn` meanwhile go to one call, which returns a result per item.
        Returns this item's."""
        return await self._queued(lambda future: _Item(future, many=fn, item=item))

    async def _queued(self, make: Callable[[asyncio.Future[Any]], _Item]) -> Any:
        if self._task is None or self._task.done():
            # A context of its own: it writes for every channel and broadcast, so its log lines
            # must not carry the ids of whichever send started it.
            context = contextvars.Context()
            if self._first:
                context.run(goes_first)
            self._task = asyncio.create_task(self._run(), name="outcome-recorder", context=context)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(make(future))
        self._ready.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                group, self._queue = self._queue[: self._most], self._queue[self._most :]
                await self._commit(group)

    async def _commit(self, group: list[_Item]) -> None:
        def together(conn: Connection) -> list[Any]:
            results: list[Any] = [None] * len(group)
            batched: dict[Many, list[int]] = {}
            for i, entry in enumerate(group):
                if entry.write is not None:
                    results[i] = entry.write(conn)
                else:
                    assert entry.many is not None
                    batched.setdefault(entry.many, []).append(i)
            for many, at in batched.items():
                for i, result in zip(at, many(conn, [group[i].item for i in at]), strict=True):
                    results[i] = result
            return results

        try:
            results = await self._db.write(together)
        except Exception as e:
            if len(group) == 1:
                if not group[0].future.done():
                    group[0].future.set_exception(e)
                return
            for entry in group:
                await self._commit([entry])
            return
        for entry, result in zip(group, results, strict=True):
            if not entry.future.done():
                entry.future.set_result(result)
