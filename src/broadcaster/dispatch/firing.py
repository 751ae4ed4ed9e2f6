"""The firing loop: sends each scheduled broadcast at its time, once, from whichever replica is
up.

The due time is durable (`broadcasts.schedule_time`); nothing in memory is the source of truth.
Each `broadcaster serve` process runs one `Firing`. It sleeps until the earliest scheduled
broadcast is due (read from the database, never remembered), or until told that one was
scheduled: directly in this process (`wake`), by a PostgreSQL notification from another
replica, and otherwise on a safety poll. When broadcasts are due it claims a batch of them in
one statement under a short lease (store.schedules) and fires them together by Send's rules
(services.sending `fire_many`: checked per channel, then started many to a transaction in a
few set-based statements).

Exactly once: the claim lease only keeps replicas from doing the same work twice. What sends a
broadcast is its change of state out of SCHEDULED (FIRE, or FAIL when a precondition no longer
holds), an UPDATE guarded by that state under the broadcast's row lock: whichever replica (or
retry) comes second finds it no longer scheduled and does nothing. A replica that dies holding
a claim leaves it to expire; another then takes the broadcast over, a lease term late at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import timedelta

from broadcaster.services.context import ServiceContext
from broadcaster.services.waiting import run_due, seconds_until
from broadcaster.store import notifications, schedules
from broadcaster.store.notifications import Listener

log = logging.getLogger(__name__)

Fire = Callable[[list[tuple[str, str]]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class FiringSettings:
    lease_seconds: float = 30.0  # a claim; also the pause before a channel is tried again
    claim_limit: int = 200  # due broadcasts claimed in one statement
    safety_poll_seconds: float = 10.0  # the longest sleep, whatever the next due time


class Firing:
    def __init__(
        self,
        ctx: ServiceContext,
        fire: Fire,
        settings: FiringSettings | None = None,
        *,
        listener: Listener | None = None,
        aside: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        """`fire([(merchant, broadcast_id), …])` sends due broadcasts (Sending.fire_many);
        `listener`: the process's PostgreSQL listener (by default one of its own on
        PostgreSQL); `aside()`: the channel ids this process cannot open now, whose broadcasts
        it leaves to other replicas (Sending.channels_aside)."""
        self._ctx = ctx
        self._fire = fire
        self._aside = aside
        self.settings = settings or FiringSettings()
        self._subscription = notifications.Subscription(
            ctx.db, notifications.SCHEDULE_CHANNEL, lambda _payload: self.wake(), listener
        )
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """A broadcast was scheduled: look again when the next one is due."""
        self._wake.set()

    def start(self) -> None:
        self._subscription.start()
        self._loop = asyncio.create_task(self._run(), name="firing")

    async def stop(self, grace: float = 10.0) -> None:
        """Claim nothing more (SIGTERM); broadcasts claimed already are fired (for up to
        `grace` seconds: past it the firing is cut off, and what it had not fired is fired by
        another replica once its claim lapses)."""
        self._stopping = True
        self._subscription.cancel()
        self._wake.set()
        if self._loop is not None:
            _, late = await asyncio.wait({self._loop}, timeout=grace)
            if late:
                self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        await self._subscription.close()

    async def fire_due(self) -> int:
        """Claim the broadcasts due now (up to the claim limit) and fire them; how many were
        claimed."""
        now = self._ctx.now()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        due = await self._ctx.db.write(
            schedules.claim_due,
            now=now,
            lease_until=until,
            limit=self.settings.claim_limit,
            skip_channels=self._aside(),
        )
        if due:
            try:
                await self._fire([(d.merchant, d.broadcast) for d in due])
            except Exception:  # those not fired are tried again once their claim lapses
                log.exception("firing %d scheduled broadcasts", len(due))
        return len(due)

    async def _next_wait(self) -> float:
        """Seconds until the next broadcast is due, at most the safety poll."""
        now = self._ctx.now()
        nxt = await self._ctx.db.read(schedules.next_due, now, self._aside())
        return seconds_until(nxt, now, self.settings.safety_poll_seconds, 0.005)

    async def _step(self) -> float:
        if await self.fire_due() >= self.settings.claim_limit:
            return 0.0  # more may be due
        return await self._next_wait()

    async def _run(self) -> None:
        await run_due(
            self._step,
            self._wake,
            log,
            "firing: looking for due broadcasts",
            retry=1.0,
            running=lambda: not self._stopping,
        )
