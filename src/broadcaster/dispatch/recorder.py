"""Group commit for batch outcomes.

At the channel's ceiling, outcomes arrive every few milliseconds; committing each alone would
make the commit (and, on PostgreSQL, the per-merchant events lock) the bottleneck. Outcomes
that arrive while a transaction is being written go into the next one together. Each outcome
is still recorded whole in one transaction with its counters and events (DESIGN §5); if a
shared transaction fails, its outcomes are retried one per transaction, so one bad outcome
cannot hold the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from broadcaster.store.database import Database

Write = Callable[[Connection], Any]


class Recorder:
    def __init__(self, db: Database, *, most: int = 64) -> None:
        self._db = db
        self._most = most
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(conn, *args)` in a transaction, possibly shared with other outcomes; returns
        its result."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outcome-recorder")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((lambda conn: fn(conn, *args), future))
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

    async def _commit(self, group: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        def together(conn: Connection) -> list[Any]:
            return [fn(conn) for fn, _ in group]

        try:
            results = await self._db.write(together)
        except Exception as e:
            if len(group) == 1:
                if not group[0][1].done():
                    group[0][1].set_exception(e)
                return
            for item in group:
                await self._commit([item])
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
