"""Forgetting a deleted channel's contacts, in the background.

DeleteChannel marks the channel deleted in a short transaction; from then on nothing reads its
contacts (every read of a contact goes through its live channel). Each `broadcaster serve`
process runs one loop that deletes them a few hundred at a time (`rows`), each chunk its own
transaction, and after each pauses as long as the chunk took, so forgetting a channel holds the
database's writer at most half the time: on SQLite, with one writer for every merchant,
deleting a million contacts in the DeleteChannel transaction kept everyone's sending waiting
for 16.7 s. The loop is woken by a delete on this replica and otherwise looks every `every`
seconds (a delete on another replica, or one a restart cut short). Replicas forget side by
side without waiting on each other (store.channels.forget_contacts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from broadcaster.services.context import ServiceContext
from broadcaster.services.waiting import run_due
from broadcaster.store import channels as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForgetSettings:
    rows: int = 500  # contacts deleted in one transaction
    every: float = 300.0  # seconds between looks when nothing wakes the loop


class Forgetting:
    def __init__(self, ctx: ServiceContext, settings: ForgetSettings | None = None) -> None:
        self._ctx = ctx
        self.settings = settings or ForgetSettings()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._forgotten = 0  # since the loop last found nothing left, for one log line

    def wake(self) -> None:
        """A channel was deleted here: start forgetting its contacts now."""
        self._wake.set()

    async def forget_some(self) -> tuple[int, float]:
        """Delete one chunk of a deleted channel's contacts: how many, and the seconds it took."""
        started = time.monotonic()
        n = await self._ctx.db.write(repo.forget_contacts, self.settings.rows)
        return n, time.monotonic() - started

    async def forget_all(self) -> int:
        """Every deleted channel's contacts, a chunk at a time at full pace; how many."""
        total = 0
        while (n := (await self.forget_some())[0]) > 0:
            total += n
        return total

    async def _step(self) -> float:
        n, took = await self.forget_some()
        if n > 0:
            self._forgotten += n
            return max(took, 0.001)  # the writer is free as long again before the next chunk
        if self._forgotten:
            log.info("forgot %d contacts of deleted channels", self._forgotten)
            self._forgotten = 0
        return self.settings.every

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="forget-deleted-contacts")

    async def _run(self) -> None:
        await run_due(self._step, self._wake, log, "forgetting deleted channels' contacts")

    async def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop
        self._loop = None
