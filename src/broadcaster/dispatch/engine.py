"""The dispatcher: sends the batches of SENDING broadcasts, upholding the invariants of dispatch
in docs/architecture.md.

One `Dispatcher` runs in each `broadcaster serve` process. It looks for channels with open
batches and, for each channel whose dispatch lease (`channel_leases`) it can take, runs a
`ChannelDispatch`: one dispatcher per channel account across all replicas, so the channel's rate
ceiling holds. A channel dispatch holds its lease (renewed with the process's others:
dispatch.leases), claims due batches under batch leases, keeps a bounded number of sends in
flight behind a token bucket at the channel's ceiling, and records each batch's outcome in one
transaction (store.dispatch).

Failures:
- transient (5xx, timeout, reset, 429): retried with backoff and jitter, with the batch's key;
  a 429 also slows the bucket. Past the channel's key window a batch is never retried blindly:
  if an attempt may have been accepted (a timeout, a reset, a 5xx, or a takeover: history this
  process does not know), its recipients become OUTCOME_UNKNOWN (`KEY_EXPIRED`); if every
  answer was a definite refusal (429), it starts over later with a fresh key.
- invalid recipients named by the channel: they fail with `INVALID_RECIPIENT`, the rest of the
  batch is sent again (nothing was accepted, so the same key is still unused).
- quota exhausted: the broadcast fails with `QUOTA_EXHAUSTED`; unsent recipients stay
  resendable (NOT_SENT_QUOTA).
- rejected (a refused message): the broadcast fails with `CHANNEL_REJECTED`.
- the channel refuses the credential of a channel that issues its own (LINE: a short-lived
  token): it gets a new one (RenewsCredentials) and the batch is sent again with the same key,
  once; if the new one is refused too, as below.
- the channel is gone (DeleteChannel, here or on another replica) or refuses its credentials:
  the channel's dispatch stops at once. Sends already with the channel finish and are recorded;
  claimed batches that have not left (waiting for the token bucket) never go and become
  NOT_SENT_STOPPED; every sending broadcast of the channel fails (`CHANNEL_NOT_CONNECTED`,
  `CHANNEL_CREDENTIALS_INVALID`). This process hears of a DeleteChannel at once (the channel
  hub); another replica within one lease renewal (a fifth of the lease term), when the renewal
  finds the channel deleted.
- a process that dies loses its leases; the next lease holder takes its batches over with the
  same keys, so a batch the channel had already accepted is answered "already accepted".
- a process that stops (SIGTERM) drains (`Dispatcher.stop`): it claims nothing more, its sends
  with the channel are answered and recorded within a grace period, and each channel's lease
  (and the leases of batches claimed and not sent) goes at once, so another replica takes over
  without waiting for a lease to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from broadcaster import logs, tracing
from broadcaster.channels import (
    Channel,
    ChannelUnavailable,
    RenewsCredentials,
    ReportsStatistics,
    SendBatch,
    SendOutcome,
    SendStatus,
)
from broadcaster.dispatch.leases import LeaseKeeper
from broadcaster.dispatch.ratelimit import TokenBucket
from broadcaster.dispatch.recorder import Recorder
from broadcaster.dispatch.wire import AnswerPace, Slots
from broadcaster.domain.deliveries import DeliveryOutcome
from broadcaster.domain.reasons import Reason
from broadcaster.domain.recipients import Recipients
from broadcaster.domain.retries import WINDOW_MARGIN, OutcomeUnknown, Rekey, next_step
from broadcaster.domain.statistics import pace_step
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.services.waiting import wait_or_wake
from broadcaster.store import channels as channel_repo
from broadcaster.store import dispatch as store
from broadcaster.store import dispatch_work, notifications, statistics
from broadcaster.store.database import goes_first
from broadcaster.store.notifications import Listener

log = logging.getLogger(__name__)


_ACCEPTED = frozenset({SendStatus.ACCEPTED, SendStatus.ALREADY_ACCEPTED})
_LAPSE_MARGIN = 0.05  # seconds past a lease's expiry before trying for it
# Group commits of outcomes that run at once on PostgreSQL (dispatch.recorder); SQLite has one
# writer. Each takes one of the threads that go first (store.database.FIRST_THREADS).
RECORDING_LANES = 3
# The most outcomes one group commit records. At eight channels' ceilings a commit of 64 left
# the recorder behind and each channel's sends waiting on it; 256 keeps up.
RECORDED_AT_ONCE = 256


@dataclass(frozen=True, slots=True)
class Settings:
    lease_seconds: float = 5.0  # a dead process's channels are taken over after this
    batch_lease_seconds: float = 600.0  # a batch held longer is assumed stuck
    # How often a channel's dispatch looks again for open batches it cannot claim yet.
    poll_seconds: float = 0.5
    # How often a process looks for work it was not told of (a channel another replica set
    # aside, a notification lost on a reconnect). Sends wake the dispatcher at once, in this
    # process and through PostgreSQL in the others; a channel whose lease another replica
    # holds is looked at again when that lease would lapse, in case that replica died.
    safety_poll_seconds: float = 5.0
    # Per channel: batches in flight, from before their bucket slot until the channel takes
    # them (waiting for the slot, the answer or a retry: what a deleted channel or a refused
    # credential can still let through): `least_in_flight` at first and while the channel
    # answers fast, more as its answers take longer (its rate x their time, dispatch.wire), up
    # to `in_flight`; batches claimed ahead of those, waiting for a place (so that a claim
    # waiting its turn at the database's writer does not leave the channel idle: 50-320 ms at
    # eight channels' ceilings on SQLite); and batches claimed and not yet recorded (answered
    # ones waiting for their group commit too).
    in_flight: int = 192
    least_in_flight: int = 32
    ahead: int = 32
    unrecorded: int = 256
    # The pace, below the ceiling; and a cap on any one-second window, a little below the
    # ceiling too, so that no window as the channel measures it (requests arrive with some
    # jitter) ever holds more than the ceiling, even after a stall.
    rate_share: float = 0.985
    window_share: float = 0.99

    @property
    def lease_margin(self) -> float:
        """How long a lease taken now is ours for sure: its term less a safety margin."""
        return self.lease_seconds * 0.6


@dataclass(frozen=True, slots=True)
class Needs:
    """What one channel's dispatch needs from the process that runs it."""

    ctx: ServiceContext
    hub: ChannelHub
    settings: Settings
    rng: random.Random  # the jitter of retries
    set_aside: Callable[[str], None]  # leave a channel to other replicas for a while
    delivered: Callable[[], None]  # Message Center events were recorded
    record: Recorder  # the process's group commit, shared by every channel it dispatches
    leases: LeaseKeeper  # renews the leases of every channel it dispatches, together


async def take_leases(
    ctx: ServiceContext, settings: Settings, wanted: list[tuple[str, str]]
) -> list[str]:
    """Take or renew the dispatch leases of these (channel, owner) for one term, in one
    transaction; returns the channels taken (the others another process holds)."""
    now = ctx.now()
    until = now + timedelta(seconds=settings.lease_seconds)
    return list(await ctx.db.write(store.acquire_channels, wanted, until, now))


class Dispatcher:
    """Finds the channels with work and runs each one this process can take.

    It looks when told to: a Send in this process (`wake`), a Send on another replica (a
    notification on `broadcaster_dispatch`, PostgreSQL), a channel's dispatch ending here; and
    otherwise on the slow safety poll (`Settings.safety_poll_seconds`). An idle process costs
    one read of the open batches per safety poll, and nothing per connected channel."""

    def __init__(
        self,
        ctx: ServiceContext,
        hub: ChannelHub,
        settings: Settings | None = None,
        *,
        delivered: Callable[[], None] = lambda: None,
        rng: random.Random | None = None,
        listener: Listener | None = None,
    ) -> None:
        """`delivered` is called after Message Center events are recorded. `listener`: the
        process's PostgreSQL listener, shared with the event feed (by default the dispatcher
        opens one of its own on PostgreSQL)."""
        self._ctx = ctx
        self._subscription = notifications.Subscription(
            ctx.db, notifications.DISPATCH_CHANNEL, self._notified, listener
        )
        # Tasks of its own: notifying other replicas, reading the cancels it may have missed.
        self._handing: set[asyncio.Task[None]] = set()
        self.delivered = delivered
        self._hub = hub
        self.settings = settings or Settings()
        self.owner = uuid.uuid4().hex
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._channels: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, ChannelDispatch] = {}
        self._aside: dict[str, float] = {}  # channel -> monotonic time until which to skip it
        self._loop: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        self._stopped = False
        self._replicas = 1  # dispatchers running, this one included (heartbeats)
        self._unheld: dict[str, float] = {}  # channel -> monotonic time first seen unheld
        self._kept: set[str] = set()  # taken past our share: nobody else took them
        # Group commits shared by every channel: outcomes of all the channels sending at once
        # share transactions (on SQLite, turns at its one writer; on PostgreSQL, a lane per
        # merchant's outcomes, several committing at once).
        self._record = Recorder(
            ctx.db,
            most=RECORDED_AT_ONCE,
            first=True,
            lanes=RECORDING_LANES if ctx.db.dialect == "postgresql" else 1,
        )
        self._leases = LeaseKeeper(ctx, lambda: self.settings)
        hub.on_gone(self.channel_gone)

    def channel_gone(self, channel: str) -> None:
        """The channel was deleted (its broadcasts failed in the same transaction): nothing more
        of it goes out from this process."""
        run = self._runs.get(channel)
        if run is not None:
            run.gone(Reason.CHANNEL_NOT_CONNECTED)

    def wake(self, channel: str | None = None) -> None:
        """A broadcast was just sent (on `channel`, when known): look for work now rather than
        at the next poll, and the run already dispatching that channel claims again."""
        self._wake.set()
        runs = self._runs.values() if channel is None else filter(None, [self._runs.get(channel)])
        for run in runs:
            run.woken()

    def cancelled(self, channel: str, broadcast: str) -> None:
        """The broadcast was cancelled (its batches not yet claimed closed in the same
        transaction), in this process or (PostgreSQL) another: of those this process claimed,
        the ones never sent do not go."""
        run = self._runs.get(channel)
        if run is not None:
            run.cancelled(broadcast)

    def _notified(self, payload: str | None) -> None:
        """Another replica (or this one) made broadcasts dispatchable, or the listener
        reconnected and may have missed that: look for work now. Or a replica cancelled a
        broadcast: this one's claimed batches of it that never went do not go."""
        cancelled = notifications.cancelled_in(payload)
        if cancelled is not None:
            self.cancelled(*cancelled)
            return
        self.wake(payload or None)  # a Send names its channel
        if payload is None and self._runs:
            # (Re)connected: a cancel taken elsewhere meanwhile was not heard of.
            task = asyncio.create_task(self._cancelled_unheard())
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)

    async def _cancelled_unheard(self) -> None:
        """Which of the broadcasts this process's runs hold claimed batches of were cancelled,
        read once: those batches that never went do not go (the notification of the cancel may
        have come while the listening connection was away)."""
        runs = list(self._runs.values())
        claimed: set[str] = set()
        for run in runs:
            claimed |= run.claimed_broadcasts()
        if not claimed:
            return
        try:
            found = await self._ctx.db.read(store.cancelled_among, sorted(claimed))
        except Exception:
            log.exception("dispatcher: could not look for broadcasts cancelled meanwhile")
            return
        for run in runs:
            for broadcast in run.claimed_broadcasts() & found:
                run.cancelled(broadcast)

    def start(self) -> None:
        self._subscription.start()
        # Contexts of their own, so their log lines do not carry the ids of whatever started
        # them; and their database calls (and those of the channel dispatches they start) go
        # first.
        supervising, beating, renewing = (contextvars.Context() for _ in range(3))
        for context in (supervising, beating, renewing):
            context.run(goes_first)
        self._loop = asyncio.create_task(self._supervise(), name="dispatcher", context=supervising)
        self._beating = asyncio.create_task(
            self._beat(), name="dispatcher-heartbeat", context=beating
        )
        self._leases.start(renewing)

    async def stop(self, grace: float = 10.0) -> None:
        """Drain, then stop (SIGTERM): look for no more work, and withdraw this dispatcher's
        heartbeat, so the other replicas share the channels without it from now on. Each
        channel's dispatch claims nothing more; its sends already with the channel finish and
        are recorded, for up to `grace` seconds, and those waiting for a slot or to retry do
        not go. Then its lease goes at once, with the batches it claimed and did not send, and
        the other replicas are told, so they take the channel over without waiting for a
        lease to lapse. Sends still going after `grace` are cut off: the next holder sends
        those batches again with the same keys, and the channel answers "already accepted"
        for any it took."""
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        self._subscription.cancel()
        for task in (self._loop, self._beating):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._beating is not None:
            try:  # the others share the channels now, not when the heartbeat runs out
                await self._ctx.db.write(dispatch_work.stop_heartbeat, self.owner)
            except Exception:
                log.exception("dispatcher: could not withdraw its heartbeat")
        runs, tasks = dict(self._runs), dict(self._channels)
        for run in runs.values():
            run.drain()
        late: set[asyncio.Task[None]] = set()
        if tasks:
            _, late = await asyncio.wait(tasks.values(), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for channel, run in runs.items():
            if run.released or run.lost:
                continue
            try:  # cut off (or failed) before it could let the channel go
                await self._ctx.db.write(store.leave_channel, channel, run.owner, run.unsent)
            except Exception:
                log.warning("dispatcher: could not release channel %s", channel, exc_info=True)
        await self._record.close()
        await self._leases.close()
        if runs:  # their leases were released with work perhaps left: others may take it now
            self._tell_others()
        for task in list(self._handing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._subscription.close()
        if runs:
            log.info(
                "dispatcher: drained %d channels in %.2f s (%d cut off after %g s)",
                len(runs),
                time.monotonic() - started,
                len(late),
                grace,
            )

    async def _beat(self) -> None:
        """Say this dispatcher runs, and learn how many do: the channels with work are shared
        between them. A dispatcher that stops beating (its process died) drops out after
        three beats; its channels are taken over sooner, when their leases lapse."""
        period = self.settings.lease_seconds
        beats = 0
        while True:
            now = self._ctx.now()
            until = now + timedelta(seconds=3 * period)
            try:
                replicas = await self._ctx.db.write(dispatch_work.heartbeat, self.owner, until, now)
            except Exception:
                log.exception("dispatcher: could not renew its heartbeat")
            else:
                beats += 1
                if beats == 1:
                    self._tell_others()  # a newcomer: the others re-share their channels now
                if replicas != self._replicas:
                    self._replicas = replicas
                    self._wake.set()  # the shares changed
            await asyncio.sleep(period)

    def _tell_others(self) -> None:
        """Tell the other replicas to look for work again (PostgreSQL): this process released
        a channel's lease with batches perhaps open, or it just joined and they share their
        channels with it."""
        if self._ctx.db.dialect != "postgresql":
            return
        task = asyncio.create_task(self._notify_others(), context=contextvars.Context())
        self._handing.add(task)
        task.add_done_callback(self._handing.discard)

    async def _notify_others(self) -> None:
        try:
            await self._ctx.db.write(notifications.notify, notifications.DISPATCH_CHANNEL)
        except Exception:  # they find it on their safety poll
            log.warning("dispatcher: could not notify the other replicas", exc_info=True)

    async def _supervise(self) -> None:
        while True:
            self._wake.clear()
            pause = self.settings.safety_poll_seconds
            try:
                pause = min(pause, await self._take_channels())
            except Exception:
                log.exception("dispatcher: could not look for work")
            await wait_or_wake(self._wake, pause)

    async def _take_channels(self) -> float:
        """Start a run for each channel with work that nobody dispatches, up to this process's
        share of them (the channels with work over the dispatchers running, rounded up), and
        hand the runs past its share back to the others. A channel nobody has taken for a
        lease term (the others are at their share, or cannot dispatch it) is taken anyway, as
        is one whose lease lapsed (its holder died). Returns the seconds until something may
        change without a wake-up: a lease another process holds lapses, or a channel left to
        the others becomes overdue; infinity if nothing."""
        settings = self.settings
        now, clock = self._ctx.now(), time.monotonic()
        work = await self._ctx.db.read(dispatch_work.look, now)
        found = work.channels
        if work.dispatchers is not None:
            self._replicas = work.dispatchers
        share = -(-len(found) // self._replicas)
        with_work = {f.channel for f in found}
        for gone in self._unheld.keys() - with_work:
            del self._unheld[gone]
        # The share is of channels with work: a run whose channel has none left, still ending
        # (its last writes waiting for their turn), takes none of it.
        held = len(with_work & self._channels.keys())
        lapses = math.inf
        wanted: dict[str, tuple[str, bool]] = {}  # channel -> (owner, kept past our share)
        for f in found:
            channel = f.channel
            if channel in self._channels or self._aside.get(channel, 0.0) > clock:
                continue
            if f.lease_expiry is not None and f.lease_expiry >= now:
                self._unheld.pop(channel, None)
                left = (f.lease_expiry - now).total_seconds()
                lapses = min(lapses, left + _LAPSE_MARGIN)  # another replica dispatches it
                continue
            orphaned = f.lease_expiry is not None  # its holder stopped renewing: it died
            since = self._unheld.setdefault(channel, clock)
            overdue = clock - since > settings.lease_seconds
            if not (orphaned or overdue) and held + len(wanted) >= share:
                # Another dispatcher's share: look again when it would be overdue.
                lapses = min(lapses, since + settings.lease_seconds - clock + _LAPSE_MARGIN)
                continue
            # Each run has its own owner id, so a run that ends (its lease lapsed, an error)
            # leaves its batches to the next run as it would to another replica.
            wanted[channel] = (f"{self.owner}:{uuid.uuid4().hex[:8]}", orphaned or overdue)
        taken: set[str] = set()
        if wanted:  # one transaction for all: many channels start together, not one by one
            taken = set(
                await take_leases(
                    self._ctx, settings, [(c, owner) for c, (owner, _) in wanted.items()]
                )
            )
        if len(taken) < len(wanted):
            lapses = min(lapses, settings.lease_seconds)  # some taken meanwhile
        for channel, (owner, kept) in wanted.items():
            if channel not in taken:
                continue
            needs = Needs(
                self._ctx,
                self._hub,
                settings,
                self._rng,
                self.set_aside,
                self.delivered,
                self._record,
                self._leases,
            )
            run = ChannelDispatch(needs, channel, owner, time.monotonic() + settings.lease_margin)
            task = asyncio.create_task(run.run(), name=f"dispatch-{channel}")
            self._channels[channel] = task
            self._runs[channel] = run
            self._unheld.pop(channel, None)
            if kept:
                self._kept.add(channel)
            task.add_done_callback(functools.partial(self._done, channel))
        excess = len(with_work & self._runs.keys()) - share
        if self._replicas > 1 and excess > 0:
            for channel, run in list(self._runs.items()):
                if excess <= 0:
                    break
                if channel in with_work and channel not in self._kept and not run.handing_over:
                    log.info("dispatch of channel %s: handed over to another replica", channel)
                    run.hand_over()
                    excess -= 1
        return lapses

    def set_aside(self, channel: str, seconds: float = 60.0) -> None:
        """This process cannot dispatch the channel (say, its plugin is not installed here):
        leave it to other replicas for a while."""
        self._aside[channel] = time.monotonic() + seconds

    def _done(self, channel: str, task: asyncio.Task[None]) -> None:
        self._channels.pop(channel, None)
        run = self._runs.pop(channel, None)
        self._kept.discard(channel)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatch of channel %s stopped", channel, exc_info=task.exception())
        self._wake.set()  # work may remain (an error, or a lost lease): look again
        handed = run is not None and run.handing_over
        if handed or self._aside.get(channel, 0.0) > time.monotonic():
            self._tell_others()  # left to the other replicas: they need not wait for their poll


class ChannelDispatch:
    """One channel's sends while this process holds its lease."""

    def __init__(self, needs: Needs, channel: str, owner: str, lease_valid: float) -> None:
        self._needs = needs
        self._ctx = needs.ctx
        self._settings = needs.settings
        self.owner = owner
        self.channel = channel
        self._lease_valid = lease_valid  # monotonic time until which sending is safe
        self._lost = False
        self._stopping = False
        self.handing_over = False
        self.released = False  # the lease (and the batches claimed, not sent) let go
        self._kind = ""  # the channel's type, once known
        self._reports = False  # the channel keeps statistics (ReportsStatistics)
        # Claimed, not yet recorded: each batch's send, with the broadcast it is of.
        self._sends: dict[asyncio.Task[None], str] = {}
        self._unanswered: set[asyncio.Task[None]] = set()  # of those, not yet answered
        # The channel's bound in flight, sized by its answers once its rate is known (`run`).
        self._pace = AnswerPace(least=self._settings.least_in_flight, most=self._settings.in_flight)
        self._wire = Slots(self._pace.least)
        self._record = needs.record
        self._room = asyncio.Event()
        # Until when (monotonic) the channel's claimable batches are all claimed: the last
        # claim found fewer than it asked for. Batches ending meanwhile do not claim again;
        # a Send (`woken`) or the poll does.
        self._all_claimed_until = 0.0
        # Set when the channel can send no more (deleted, credentials refused); its result, the
        # reason, once the channel's broadcasts are failed in the database.
        self._gone: asyncio.Future[Reason] | None = None
        self._halt = asyncio.Event()  # set with `_gone`: wakes batches waiting to retry
        self._cancelled: set[str] = set()  # broadcasts cancelled (here or elsewhere) meanwhile
        # Broadcasts this run has had a batch accepted of: the first one writes the
        # broadcast's statistics row if none was (statistics.Tag.first).
        self._tagged: set[str] = set()
        # (broadcast, batch) claimed by this run and let go without being sent (stopping, or
        # the lease lapsed): their claims are taken back when the run leaves the channel.
        self.unsent: list[tuple[str, int]] = []

    @property
    def _holding(self) -> bool:
        return (
            not (self._lost or self._stopping)
            and self._gone is None
            and time.monotonic() < self._lease_valid
        )

    def gone(self, reason: Reason) -> None:
        """The channel's broadcasts have been failed with `reason`: send nothing more."""
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        if not self._gone.done():
            self._gone.set_result(reason)
        self._room.set()
        self._halt.set()

    def cancelled(self, broadcast: str) -> None:
        """The broadcast was cancelled: its batches claimed and never sent stay unsent."""
        self._cancelled.add(broadcast)

    def claimed_broadcasts(self) -> set[str]:
        """The broadcasts of the batches this run claimed and has not yet recorded."""
        return set(self._sends.values())

    def woken(self) -> None:
        """A broadcast was sent, perhaps on this channel: its batches may be there to claim."""
        self._all_claimed_until = 0.0
        self._room.set()

    @property
    def lost(self) -> bool:
        """Another process holds the channel's lease now."""
        return self._lost

    def drain(self) -> None:
        """The process is stopping: claim nothing more; sends with the channel finish and are
        recorded, those waiting for a slot or to retry do not go; then the lease goes, with
        the batches claimed and not sent, and the other replicas are told."""
        self.hand_over()
        self._halt.set()

    def hand_over(self) -> None:
        """Leave the channel to another replica: claim nothing more; the sends under way finish
        and are recorded, then the lease is released. Batches claimed but not sent keep their
        keys and are taken over by the next holder at once."""
        self._stopping = True
        self.handing_over = True
        self._room.set()

    async def run(self) -> None:
        try:
            found = await self._needs.hub.get(self.channel)
        except Exception:  # e.g. its plugin is not installed in this process
            log.exception(
                "dispatch of channel %s: cannot open it here; leaving it to others", self.channel
            )
            self._needs.set_aside(self.channel)
            await self._ctx.db.write(store.release_channel, self.channel, self.owner)
            self.released = True
            return
        if found is None:
            await self._abandon()
            return
        _, instance = found
        self._kind = type(instance).type
        self._reports = isinstance(instance, ReportsStatistics)
        caps = type(instance).capabilities
        ceiling = caps.requests_per_second
        bucket = TokenBucket(
            ceiling * self._settings.rate_share,
            burst=1.0,
            window=max(1, math.floor(ceiling * self._settings.window_share)),
        )
        self._pace.rate = bucket.rate
        self._needs.leases.hold(self)
        try:
            await self._dispatch(instance, bucket, caps.idempotency_window_seconds)
        finally:
            # Sends already with the channel finish and are recorded, under the lease (still
            # renewed); the rest stop before sending. Then the lease goes, with the batches
            # claimed and not sent, so another replica can take over at once.
            self._stopping = True
            try:
                if self._sends:  # (each records its outcome before it ends)
                    await asyncio.gather(*self._sends, return_exceptions=True)
            finally:
                self._needs.leases.release(self)
            if not self.released:  # (a claim that found nothing open let go of it all)
                if not self._lost:
                    await self._ctx.db.write(
                        store.leave_channel, self.channel, self.owner, self.unsent
                    )
                    self.released = True
                elif self.unsent:
                    await self._ctx.db.write(store.undo_claims, self.owner, self.unsent)
            if self._deleted:
                # What is still open of a deleted channel nobody can send or resolve any more
                # (a claim takes nothing of it): ended here rather than left to a next run.
                self._needs.hub.forget(self.channel)
                await self._abandon()

    @property
    def _deleted(self) -> bool:
        """The run learnt that the channel was deleted."""
        gone = self._gone
        return (
            gone is not None
            and gone.done()
            and gone.exception() is None
            and gone.result() is Reason.CHANNEL_NOT_CONNECTED
        )

    def renewed(self, valid_until: float) -> None:
        """The lease was renewed (LeaseKeeper): sending is safe until `valid_until`."""
        self._lease_valid = valid_until

    def lose(self) -> None:
        """The lease was not renewed: another process holds it now."""
        self._lost = True
        self._room.set()

    async def _dispatch(self, instance: Channel, bucket: TokenBucket, window: int) -> None:
        """Claim batches while the channel has room for them: fewer than its bound in flight +
        `ahead` of its batches unanswered, and fewer than `unrecorded` not yet recorded. An
        answered batch waiting for its group commit leaves the wire, so the next one can go
        meanwhile."""
        settings = self._settings
        while self._holding:
            # Cleared before looking: a batch freed while this turn claims wakes the next.
            self._room.clear()
            room = self._room_left()
            claimed: list[store.ClaimedBatch] = []
            if self._claims_now(room):
                now = self._ctx.now()
                claiming = {
                    "channel": self.channel,
                    "owner": self.owner,
                    "lease_until": now + timedelta(seconds=self._settings.batch_lease_seconds),
                    "now": now,
                    "limit": room,
                }
                if self._sends:
                    claimed = await self._ctx.db.write(store.claim, **claiming)
                else:
                    # Nothing in flight: if nothing is open either, the run ends, its lease let
                    # go in the claim's own transaction.
                    claimed, left = await self._ctx.db.write(store.claim_or_leave, **claiming)
                    if left:
                        self._needs.leases.release(self)  # (renewing it now would find it gone)
                        self.released = True
                        return
                if len(claimed) < room:
                    # Nothing more to claim for now. Each batch ending had claimed again, and
                    # found nothing: 32 channels of 50 batches made 930 claims for their 1,600
                    # batches on PostgreSQL, each a write transaction.
                    self._all_claimed_until = time.monotonic() + settings.poll_seconds
            for batch in claimed:
                task = asyncio.create_task(self._deliver(instance, bucket, window, batch))
                self._sends[task] = batch.broadcast
                self._unanswered.add(task)
                task.add_done_callback(self._finished)
            if not claimed and not self._sends:
                # Open batches none of which can be claimed now (say, claimed by this run a moment
                # ago and just finishing): look again shortly.
                await asyncio.sleep(self._settings.poll_seconds)
                continue
            await wait_or_wake(self._room, self._settings.poll_seconds)

    def _room_left(self) -> int:
        """How many more batches the channel may claim now (`_dispatch`)."""
        settings = self._settings
        return min(
            self._wire.size + settings.ahead - len(self._unanswered),
            settings.unrecorded - len(self._sends),
        )

    def _claims_now(self, room: int) -> bool:
        """Whether `_dispatch` claims, with `room` left: when it holds nothing, or when a
        quarter of the bound in flight is free and the last claim did not find every claimable
        batch claimed a moment ago."""
        return not self._sends or (
            room >= max(1, self._wire.size // 4) and time.monotonic() >= self._all_claimed_until
        )

    def _freed(self) -> None:
        """A batch left the wire or ended: `_dispatch` is woken if it would claim now, or stop.
        (Woken at every batch, it went round its loop once per request, each turn a timer and a
        wake-up, to claim at one in eight of them.) Otherwise its poll looks again."""
        if not self._holding or self._claims_now(self._room_left()):
            self._room.set()

    def _answered(self) -> None:
        """The running send's batch was taken by the channel (it is off the wire, waiting for
        its record), or it ended otherwise: its slot in flight goes to the next."""
        task = asyncio.current_task()
        if task in self._unanswered:
            self._unanswered.discard(cast(asyncio.Task[None], task))
            self._wire.release()
            self._freed()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._sends.pop(task, None)
        self._unanswered.discard(task)
        self._freed()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "dispatch of channel %s: a batch failed", self.channel, exc_info=task.exception()
            )

    async def _deliver(
        self, instance: Channel, bucket: TokenBucket, window: int, batch: store.ClaimedBatch
    ) -> None:
        """Send one batch until it has an outcome, and record it. It holds one of the channel's
        slots in flight from before its first attempt until the channel takes it, or until it
        ends otherwise (a batch waiting to retry keeps its slot)."""
        await self._wire.acquire()
        try:
            await self._attempts(instance, bucket, window, batch)
        finally:
            self._answered()

    async def _attempts(
        self, instance: Channel, bucket: TokenBucket, window: int, batch: store.ClaimedBatch
    ) -> None:
        logs.merchant.set(batch.merchant)  # this task's log lines name the broadcast
        logs.broadcast.set(batch.broadcast)
        logs.channel.set(self.channel)
        recipients = batch.recipients  # as stored until the channel names some invalid
        attempts = batch.attempts
        # Whether an attempt may have been accepted: one by an earlier claim (its answer is
        # unknown here), or one of ours that met a timeout, a reset or a 5xx.
        maybe_accepted = attempts > 1
        renewed = False  # a refused credential is renewed once per batch (_renewed)
        posted = False  # whether this run has sent it to the channel
        while True:
            age = (self._ctx.now() - batch.first_attempt_time).total_seconds()
            if attempts > 1 and age >= window * WINDOW_MARGIN:
                if maybe_accepted:
                    await self._unknown(batch, window)
                else:
                    await self._rekey(batch, 0.0)
                return
            if not recipients:  # every one failed on an earlier attempt
                await self._record.write_together(
                    store.record_sent,
                    (batch, self._ctx.now(), store.Acceptance()),
                    key=batch.merchant,
                )
                return
            if not self._holding and self._gone is None:
                # Stopping: it does not wait for a slot, and the next holder sends it.
                self._let_go(batch, posted)
                return
            if self._gone is None:
                self._ctx.metrics.rate_limit_wait(self._kind, await bucket.acquire())
            if self._gone is not None:
                await self._left(batch, await self._gone, maybe_accepted)
                return
            if not self._holding:
                self._let_go(batch, posted)
                return  # the next lease holder takes this batch over, key and all
            if attempts == 1 and batch.broadcast in self._cancelled:
                await self._not_sent(batch, DeliveryOutcome.NOT_SENT_CANCELLED)
                return  # never sent: it stays unsent, as the cancel left the batches not claimed
            started = time.monotonic()
            posted = True
            sending = SendBatch(
                recipients,
                batch.messages,
                batch.idempotency_key,
                batch.notification_disabled,
                statistics_unit=self._unit(instance, batch.broadcast),
            )
            # One span per request to the channel, in the trace of the call that started the
            # broadcast; the plugin's HTTP request is its child (aiohttp's instrumentation).
            with tracing.span(
                "send batch",
                {
                    "broadcaster.merchant": batch.merchant,
                    "broadcaster.channel": self.channel,
                    "broadcaster.broadcast": batch.broadcast,
                    "broadcaster.batch": batch.batch,
                    "broadcaster.retry_key": batch.idempotency_key,
                    "broadcaster.attempt": attempts,
                    "broadcaster.recipients": len(recipients),
                },
                traceparent=batch.trace_parent,
            ) as span:
                outcome = await self._send(instance, sending)
                if span is not None:
                    span.set_attribute("broadcaster.outcome", outcome.status.name)
                    if outcome.request_id:  # the channel's id, to trace the batch with it
                        span.set_attribute("broadcaster.request_id", outcome.request_id)
            took = time.monotonic() - started
            if outcome.status not in _ACCEPTED:  # an accepted batch counts once it is recorded
                self._ctx.metrics.record_batch(self._kind, outcome, took)
            match outcome.status:
                case SendStatus.ACCEPTED | SendStatus.ALREADY_ACCEPTED:
                    bucket.succeeded()
                    self._wire.resize(self._pace.answered(took))
                    self._answered()
                    await self._accepted(instance, batch, outcome, took)
                    return
                case SendStatus.INVALID_RECIPIENTS:
                    bucket.succeeded()
                    named = set(outcome.invalid_recipients) & set(recipients)
                    if not named:  # nothing to isolate: the channel refuses the batch itself
                        await self._stop(batch, outcome, Reason.CHANNEL_REJECTED)
                        return
                    await self._invalid(batch, named)
                    recipients = Recipients(r for r in recipients if r not in named)
                case SendStatus.RETRY_LATER:
                    if outcome.rate_limited:  # refused for rate: nothing was accepted
                        bucket.slow_down()
                    else:
                        maybe_accepted = True
                    if not await self._wait_to_retry(
                        batch, outcome, attempts, age, window, maybe_accepted
                    ):
                        return
                    attempts += 1
                case SendStatus.QUOTA_EXHAUSTED:
                    await self._stop(batch, outcome, Reason.QUOTA_EXHAUSTED)
                    return
                case SendStatus.CREDENTIALS_REFUSED:
                    if not renewed and await self._renewed(instance):
                        renewed = True
                        continue  # the same batch and key, with the new credential
                    await self._refused(batch, outcome, maybe_accepted)
                    return
                case _:  # FATAL: a refused message
                    await self._stop(batch, outcome, Reason.CHANNEL_REJECTED)
                    return

    def _let_go(self, batch: store.ClaimedBatch, posted: bool) -> None:
        """The batch stays open for the next holder; if this run never sent it, its claim is
        taken back when the run leaves (store.undo_claims), so it does not count as attempted:
        the next holder's send is its first, and if its broadcast ended meanwhile it is closed
        as not sent rather than sent or left unknown."""
        if not posted:
            self.unsent.append((batch.broadcast, batch.batch))

    async def _renewed(self, instance: Channel) -> bool:
        """Whether a channel that issues its own credentials has a new one to try in place of
        the one it refused (another batch, or replica, may have renewed it already), or will
        renew before its next send (the channel unreachable now: that send is RETRY_LATER).
        Anything else (a long-lived credential, renewing refused) is a refusal."""
        if not isinstance(instance, RenewsCredentials):
            return False
        try:
            return await instance.renew_credentials(refused=True)
        except ChannelUnavailable as e:  # it renews before its next send, or says RETRY_LATER
            log.warning(
                "dispatch of channel %s: cannot renew its credential yet: %s", self.channel, e
            )
            return True
        except Exception as e:
            log.warning(
                "dispatch of channel %s: renewing its credential failed: %s", self.channel, e
            )
            return False

    async def _refused(
        self, batch: store.ClaimedBatch, outcome: SendOutcome, maybe_accepted: bool
    ) -> None:
        """The channel refused the account's credentials: nothing more goes out with them.
        Sends waiting for a slot stop now; the channel is marked so and its sending broadcasts
        fail; then this batch and those waiting are recorded as not sent."""
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
            self._room.set()
            self._halt.set()
            reason = Reason.CHANNEL_CREDENTIALS_INVALID
            log.warning(
                "dispatch of channel %s: the channel refused its credentials (%s); its "
                "broadcasts fail",
                self.channel,
                outcome.detail,
                extra={"reason": reason},
            )
            try:
                now = self._ctx.now()
                if await self._ctx.db.write(
                    channel_repo.mark_credentials_invalid, self.channel, now
                ):
                    self._ctx.metrics.credential_refused(self._kind)
                await self._ctx.db.write(store.fail_channel, self.channel, reason, now)
                self._needs.delivered()  # their lifecycle events
                self._needs.hub.forget(self.channel)
            except BaseException as e:
                self._gone.set_exception(e)
                raise
            self._gone.set_result(reason)
        await self._left(batch, await self._gone, maybe_accepted)

    async def _left(self, batch: store.ClaimedBatch, reason: Reason, maybe_accepted: bool) -> None:
        """The channel can send no more and this batch did not go (again): NOT_SENT_STOPPED,
        resendable; or, if an earlier attempt may have been accepted, OUTCOME_UNKNOWN."""
        if maybe_accepted:
            outcome, why = DeliveryOutcome.UNKNOWN, str(reason)
        else:
            outcome, why = DeliveryOutcome.NOT_SENT_STOPPED, ""
        failed = await self._record.write(
            store.record_unresolved, batch, outcome, why, self._ctx.now(), key=batch.merchant
        )
        self._needs.delivered()  # the broadcast may have completed
        if maybe_accepted:
            self._ctx.metrics.recipients(self._kind, failed=failed)

    async def _not_sent(self, batch: store.ClaimedBatch, outcome: DeliveryOutcome) -> None:
        """The batch was claimed and never sent, and will not be: its recipients get `outcome`
        (resendable)."""
        await self._record.write(
            store.record_unresolved, batch, outcome, "", self._ctx.now(), key=batch.merchant
        )

    async def _send(self, instance: Channel, batch: SendBatch) -> SendOutcome:
        try:
            return await instance.send(batch)
        except Exception as e:  # a plugin bug must not lose the batch: retry it
            log.exception("dispatch of channel %s: the channel's send raised", self.channel)
            return SendOutcome(SendStatus.RETRY_LATER, detail=f"send raised {type(e).__name__}")

    def _unit(self, instance: Channel, broadcast: str) -> str:
        """The broadcast's statistics unit on a channel that keeps statistics; "" otherwise."""
        if not self._reports:
            return ""
        # Known when the channel was opened: an isinstance check against the protocol here
        # took 3 % of the replica's time at eight channels' ceilings (py-spy).
        return cast(ReportsStatistics, instance).statistics_unit(broadcast)

    def _tag(
        self, instance: Channel, batch: store.ClaimedBatch, outcome: SendOutcome
    ) -> statistics.Tag:
        """What the accepted batch says of its broadcast's statistics."""
        first = batch.broadcast not in self._tagged
        self._tagged.add(batch.broadcast)
        if not self._reports:
            return statistics.Tag(first=first)
        step = pace_step(cast(type[ReportsStatistics], type(instance)).statistics_requests_per_hour)
        return statistics.Tag(
            unit=self._unit(instance, batch.broadcast),
            unavailable=outcome.statistics_unavailable,
            first_fetch=self._ctx.statistics.first(self._ctx.now()),
            step_us=int(step.total_seconds() * 1_000_000),
            first=first,
        )

    async def _accepted(
        self, instance: Channel, batch: store.ClaimedBatch, outcome: SendOutcome, took: float
    ) -> None:
        """The channel took the batch (now, or on an attempt whose answer was lost)."""
        now = self._ctx.now()
        said = store.Acceptance(outcome.request_id, self._tag(instance, batch, outcome))
        sent = await self._record.write_together(
            store.record_sent, (batch, now, said), key=batch.merchant
        )
        self._ctx.metrics.record_batch(self._kind, outcome, took, recipients_sent=sent)
        self._needs.delivered()  # its recipients' events, or the broadcast's completion

    async def _invalid(self, batch: store.ClaimedBatch, named: set[str]) -> None:
        """The channel named these recipients invalid and sent nothing: they fail alone."""
        failed = await self._record.write(
            store.record_invalid,
            batch,
            sorted(named),
            Reason.INVALID_RECIPIENT,
            self._ctx.now(),
            key=batch.merchant,
        )
        self._ctx.metrics.recipients(self._kind, failed=failed)

    async def _wait_to_retry(
        self,
        batch: store.ClaimedBatch,
        outcome: SendOutcome,
        attempts: int,
        age: float,
        window: int,
        maybe_accepted: bool,
    ) -> bool:
        """Wait before the next attempt; False if there is none here (the batch's outcome is
        unknown, and recorded so; or it starts over later with a fresh key)."""
        step = next_step(
            attempts=attempts,
            first_attempt_age=age,
            key_window=window,
            retry_after=outcome.retry_after,
            rng=self._needs.rng,
            maybe_accepted=maybe_accepted,
        )
        if isinstance(step, OutcomeUnknown):
            await self._unknown(batch, window)
            return False
        if isinstance(step, Rekey):
            await self._rekey(batch, step.delay)
            return False
        await wait_or_wake(self._halt, step.delay)  # cut short if the channel goes meanwhile
        return True

    async def _rekey(self, batch: store.ClaimedBatch, delay: float) -> None:
        """No attempt can have been accepted, and the next would land past the key window:
        the batch starts over with a fresh key once `delay` has passed."""
        log.warning(
            "broadcast %s batch %s: refused until past the channel's key window; it starts "
            "over with a fresh key in %.0f s",
            batch.broadcast,
            batch.batch,
            delay,
        )
        due = self._ctx.now() + timedelta(seconds=delay)
        await self._record.write(store.rekey, batch, self.owner, due, key=batch.merchant)

    async def _unknown(self, batch: store.ClaimedBatch, window: int) -> None:
        log.warning(
            "broadcast %s batch %s: not confirmed within the channel's %s s key window; "
            "its recipients are marked OUTCOME_UNKNOWN",
            batch.broadcast,
            batch.batch,
            window,
        )
        failed = await self._record.write(
            store.record_unresolved,
            batch,
            DeliveryOutcome.UNKNOWN,
            Reason.KEY_EXPIRED,
            self._ctx.now(),
            key=batch.merchant,
        )
        self._needs.delivered()  # the broadcast may have completed
        self._ctx.metrics.recipients(self._kind, failed=failed)

    async def _stop(self, batch: store.ClaimedBatch, outcome: SendOutcome, reason: Reason) -> None:
        log.warning(
            "broadcast %s stopped: %s (%s)",
            batch.broadcast,
            reason,
            outcome.detail,
            extra={"reason": reason},
        )
        quota = outcome.status is SendStatus.QUOTA_EXHAUSTED  # its recipients can be resent
        record = functools.partial(store.record_stop, quota=quota)
        await self._record.write(record, batch, reason, self._ctx.now(), key=batch.merchant)
        self._needs.delivered()  # its lifecycle event

    async def _abandon(self) -> None:
        stopped = await self._ctx.db.write(
            store.abandon_channel, self.channel, Reason.CHANNEL_NOT_CONNECTED, self._ctx.now()
        )
        self._needs.delivered()  # their lifecycle events
        log.warning("channel %s is not connected: broadcasts %s failed", self.channel, stopped)
