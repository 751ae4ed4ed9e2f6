"""Statistics collection: a broadcast sent on a channel that keeps statistics
(`ReportsStatistics`) has its figures read back while they still change.

When a broadcast's first batch is accepted its statistics row is written with the first read's
due time (store.statistics.noted, in the transaction recording the batch). Each `broadcaster
serve` process runs one collector. It sleeps until the earliest read is due (one query of the
due index), or a safety poll; then claims due reads in one transaction (store.statistics.claim):
at most one per channel account whose pace allows it, so each account's reads stay within its
channel's `statistics_requests_per_hour` across every replica, and a broadcast is read by one
replica at a time (a lease). It reads them a few at a time and writes the figures with their
read time, and the next read's due time by the schedule (domain.statistics.Schedule): hourly
during the first day, then daily, the last at the end of the channel's window.

Failures: an unreachable channel (ChannelUnavailable, which includes its rate limit) or refused
credentials put the read off with a growing backoff, and the channel's other reads with it,
until a day past the end of the channel's window: then the broadcast keeps the figures it has,
and one without any says STATISTICS_NOT_COLLECTED, as does one whose channel was disconnected
or never reported any. A replica that dies holding claims leaves them to come due again
when their leases lapse; one that stops (SIGTERM) hands its unread claims back at once. Since
due times are durable, a replica that restarts reads what came due meanwhile at its channel's
pace, not all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from broadcaster.channels import (
    ChannelUnavailable,
    CredentialsInvalid,
    ReportsStatistics,
)
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.services.waiting import run_due, seconds_until
from broadcaster.store import statistics as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    lease_seconds: float = 120.0  # a claim of a due read
    concurrent: int = 8  # reads this replica makes at once (each of another channel account)
    safety_poll_seconds: float = 60.0  # the longest sleep, whatever the next due time


class Collector:
    def __init__(
        self, ctx: ServiceContext, hub: ChannelHub, settings: CollectorSettings | None = None
    ) -> None:
        self._ctx = ctx
        self._hub = hub
        self.settings = settings or CollectorSettings()
        self.owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._reading: dict[str, asyncio.Task[None]] = {}  # broadcast id -> its read
        self._claims: dict[str, repo.Claimed] = {}

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="statistics-collector")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop reading; the claims not read yet go back at once, for another replica."""
        # Taken first: a read cut off below drops its claim as it ends. One that was recorded
        # meanwhile no longer has this replica as its owner, so handing it back changes nothing.
        left = list(self._claims.values())
        tasks = [t for t in (self._loop, *self._reading.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None
        self._claims.clear()
        try:
            await self._ctx.db.write(repo.release, left, self.owner, self._ctx.now())
        except Exception:  # they come due again when their leases lapse
            log.warning("statistics: could not hand back %d claims", len(left), exc_info=True)

    async def collect_due(self) -> int:
        """Claim the reads due now that this replica has room for and start them; how many."""
        free = self.settings.concurrent - len(self._reading)
        if free <= 0:
            return 0
        now = self._ctx.now()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        claimed = await self._ctx.db.write(
            repo.claim, owner=self.owner, now=now, lease_until=until, limit=free
        )
        for c in claimed:
            self._claims[c.broadcast] = c
            task = asyncio.create_task(self._read(c), name=f"statistics-{c.broadcast}")
            self._reading[c.broadcast] = task
            task.add_done_callback(functools.partial(self._ended, c.broadcast))
        return len(claimed)

    async def idle(self) -> None:
        """Until no read of this replica is under way (tests)."""
        while self._reading:
            await asyncio.gather(*self._reading.values(), return_exceptions=True)

    def _ended(self, broadcast: str, _task: asyncio.Task[None]) -> None:
        self._reading.pop(broadcast, None)
        self._claims.pop(broadcast, None)
        self._wake.set()

    async def _read(self, c: repo.Claimed) -> None:
        kind = "unknown"
        try:
            found = await self._hub.get(c.channel)
            instance = None if found is None else found[1]
            if not isinstance(instance, ReportsStatistics):  # deleted, or no longer reporting
                await self._ctx.db.write(repo.stop, c, self.owner)
                self._ctx.metrics.statistics_read(kind, "stopped", None)
                return
            kind = instance.type
            started = time.monotonic()
            try:
                read = await instance.fetch_statistics(c.unit, c.send_time)
            except (ChannelUnavailable, CredentialsInvalid) as e:
                took = time.monotonic() - started
                retry = self._ctx.statistics.retry(c.failures + 1, self._ctx.now())
                window = type(instance).statistics_window
                give_up = self._ctx.statistics.gives_up(c.send_time, retry, window)
                log.warning(
                    "statistics of broadcast %s: cannot read them now (%s); %s",
                    c.broadcast,
                    e,
                    "its channel's window has ended: no more reads"
                    if give_up
                    else f"again at {retry.isoformat()}",
                )
                await self._ctx.db.write(
                    repo.record_failure, c, self.owner, retry, pause_channel=True, give_up=give_up
                )
                self._ctx.metrics.statistics_read(kind, "given_up" if give_up else "failed", took)
                return
            took = time.monotonic() - started
            now = self._ctx.now()
            window = type(instance).statistics_window
            following = self._ctx.statistics.after(c.send_time, now, window)
            await self._ctx.db.write(repo.record_figures, c, self.owner, read, now, following)
            self._ctx.metrics.statistics_read(kind, "none" if read is None else "read", took)
        except asyncio.CancelledError:
            raise
        except Exception:  # a plugin bug, the database: tried again when the claim lapses
            log.exception("statistics of broadcast %s: reading them failed", c.broadcast)
            self._ctx.metrics.statistics_read(kind, "failed", None)

    async def _next_wait(self) -> float:
        # A broadcast sent meanwhile (on any replica) is first due one early interval after
        # its send: looking no less often than that finds it in time, without being told.
        early = self._ctx.statistics.early_interval.total_seconds()
        poll = min(self.settings.safety_poll_seconds, early)
        if len(self._reading) >= self.settings.concurrent:
            return poll  # until a read ends (which wakes the loop)
        nxt = await self._ctx.db.read(repo.next_due)
        return seconds_until(nxt, self._ctx.now(), poll, 0.05)

    async def _step(self) -> float:
        if await self.collect_due():
            return 0.0  # there may be more due on other channels
        return await self._next_wait()

    async def _run(self) -> None:
        await run_due(self._step, self._wake, log, "statistics: looking for due reads")
