"""The channel leases a process holds, renewed together.

Each channel this process dispatches holds a lease (`channel_leases`) for a short term, renewed
every fifth of it. Renewing each channel on its own cost a write transaction per channel per
renewal period: 32 channels sending at once made 32 writes a second at the one writer for
nothing but their leases, and 1,000 would make 1,000. `LeaseKeeper` renews every lease the
process holds in one statement per period instead.

A channel whose lease was not renewed either was disconnected (DeleteChannel on another
replica: its dispatch stops as gone) or has another holder (its dispatch stops as lost); both
are rare and looked at one channel at a time. A renewal that fails (the database unreachable)
is tried again next period: each dispatch keeps sending only while its last renewal is recent
enough (`Settings.lease_margin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.store import dispatch as store

log = logging.getLogger(__name__)


class Held(Protocol):
    """A channel's dispatch, as the keeper of its lease sees it."""

    channel: str
    owner: str

    def renewed(self, valid_until: float) -> None:
        """The lease was renewed: sending is safe until `valid_until` (monotonic)."""

    def lose(self) -> None:
        """Another process holds the channel's lease now."""

    def gone(self, reason: Reason) -> None:
        """The channel was disconnected."""


class Terms(Protocol):
    @property
    def lease_seconds(self) -> float:
        """A lease's term: renewed every fifth of it."""

    @property
    def lease_margin(self) -> float:
        """How long after a renewal sending stays safe."""


class LeaseKeeper:
    def __init__(self, ctx: ServiceContext, terms: Callable[[], Terms]) -> None:
        """`terms`: the dispatcher's settings as they are now."""
        self._ctx = ctx
        self._terms = terms
        self._held: dict[str, Held] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, context: contextvars.Context) -> None:
        """Renew every fifth of a term from now on, in `context`."""
        self._task = asyncio.create_task(self._keep(), name="channel-leases", context=context)

    def hold(self, run: Held) -> None:
        """Renew `run`'s lease from the next period on, until `release`."""
        self._held[run.channel] = run

    def release(self, run: Held) -> None:
        """Renew `run`'s lease no more (its dispatch has ended, or is letting the channel go)."""
        if self._held.get(run.channel) is run:
            del self._held[run.channel]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._terms().lease_seconds / 5)
            await self.renew()

    async def renew(self) -> None:
        """Renew every lease held, in one write; tell the dispatches that lost theirs."""
        held = list(self._held.values())
        if not held:
            return
        terms, started = self._terms(), time.monotonic()
        until = self._ctx.now() + timedelta(seconds=terms.lease_seconds)
        try:
            kept = await self._ctx.db.write(
                store.renew_channels, [(r.channel, r.owner) for r in held], until
            )
        except Exception:
            log.exception("dispatch: could not renew the leases of %d channels", len(held))
            return  # tried again next period, while each dispatch's last renewal holds
        for run in held:
            try:  # one channel's trouble is not the others'
                if run.channel in kept:
                    run.renewed(started + terms.lease_margin)
                elif self._held.get(run.channel) is run:  # (not released meanwhile)
                    await self._not_renewed(run)
            except Exception:
                log.exception("dispatch of channel %s: could not renew its lease", run.channel)

    async def _not_renewed(self, run: Held) -> None:
        live = await self._ctx.db.read(store.channel_live, run.channel)  # (raises: next period)
        if self._held.get(run.channel) is not run:
            # Its dispatch let the lease go meanwhile: the renewal missed a lease that had just
            # been given up (a run leaves in the transaction of its last claim), not one lost.
            return
        self.release(run)
        if not live:  # deleted (on another replica): its broadcasts were failed there
            log.warning("dispatch of channel %s: the channel was deleted", run.channel)
            run.gone(Reason.CHANNEL_NOT_CONNECTED)
        else:
            log.warning("dispatch of channel %s: lease taken over", run.channel)
            run.lose()
