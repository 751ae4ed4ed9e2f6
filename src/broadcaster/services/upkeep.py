"""Channel upkeep: a connected channel keeps its follower list current by itself.

On connection (CreateChannel) the first contact sync starts at once, and the channel's next
re-sync is due one interval later (`BROADCASTER_FOLLOWER_SYNC_INTERVAL`, a day by default).
The due time is durable (`channels.next_sync_time`); nothing in memory is the source of truth.

Each `broadcaster serve` process runs one upkeep loop. It sleeps until the earliest re-sync is
due (read from the database), a channel is connected here, or a safety poll (a minute: a
channel connected on another replica is seen within it). It claims due channels in one
statement under a short lease (store.upkeep, as scheduled broadcasts are claimed), and for each
starts a contact sync, unless one is running already (then that one is the re-sync), and moves
the due time one interval on. A replica that dies holding a claim leaves it to lapse; another
takes it over.

Pacing: a replica runs at most `concurrent` re-syncs at a time and claims no more until one
ends, so thousands of channels due at once are worked through a few at a time; each sync paces
its own requests under the channel's limits (the channel plugin's pacing). Channels connected
at different times come due at different times, which spreads the work over the day.

Each claimed channel's health is assessed again, which is how a follower list that could not
be re-synced turns stale (FOLLOWERS_STALE) without any other event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from broadcaster.channels import ChannelUnavailable, CredentialsInvalid, SetsWebhooks, WebhookSetup
from broadcaster.domain.health import WebhookState
from broadcaster.domain.model import ChannelAccount
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import mark_refused
from broadcaster.services.health import refresh_health
from broadcaster.services.waiting import run_due, seconds_until
from broadcaster.store import upkeep as repo
from broadcaster.store.channels import get_any_merchant

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpkeepSettings:
    lease_seconds: float = 60.0  # a claim of a due channel
    concurrent: int = 2  # re-syncs this replica runs at once
    safety_poll_seconds: float = 60.0  # the longest sleep, whatever the next due time


class ChannelUpkeep:
    def __init__(
        self,
        ctx: ServiceContext,
        syncer: ContactSyncer,
        hub: ChannelHub,
        settings: UpkeepSettings | None = None,
        *,
        public_url: str = "",
    ) -> None:
        """`public_url`: where the internet reaches this service's HTTP port (""; unknown)."""
        self._ctx = ctx
        self._syncer = syncer
        self._hub = hub
        self.public_url = public_url
        self.settings = settings or UpkeepSettings()
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # a slot freed, or a channel was connected here
        self._loop: asyncio.Task[None] | None = None

    @property
    def interval(self) -> timedelta | None:
        """Between a channel's re-syncs; None when syncs are not automatic."""
        return self._ctx.follower_sync_interval

    def webhook_url(self, account: ChannelAccount) -> str:
        """The full URL the channel must post webhooks to; "" without a public URL."""
        if not self.public_url:
            return ""
        return f"{self.public_url}{account.webhook_path}"

    async def connected(self, account: ChannelAccount) -> None:
        """A channel was just connected: set its webhook up, start its first contact sync (the
        channel plugin decides whether the account may list its followers; one that may not
        is SKIPPED at once, saying so) and schedule the next. A repeated CreateChannel starts
        nothing: the channel has had its first sync and its webhook set-up already."""
        if account.upkeep.webhook_state == WebhookState.UNKNOWN:
            await self.set_up_webhook(account)
        if account.last_sync is None and self.interval is not None:
            await self._syncer.start_for(account.id)
            await self._ctx.db.write(
                repo.schedule_sync, account.id, self._ctx.now() + self.interval
            )
            self._wake.set()  # the loop may be sleeping past the new due time
        await refresh_health(self._ctx, account.id)

    async def set_up_webhook(self, account: ChannelAccount) -> WebhookState:
        """Point the channel's webhook at this service and have the channel test it, when the
        public URL is known and the channel's API can (`SetsWebhooks`); otherwise record what
        the merchant must set by hand. The outcome is on the Channel (`webhook`)."""
        url = self.webhook_url(account)
        found = await self._hub.get(account.id)
        instance = None if found is None else found[1]
        now = self._ctx.now()
        if not url:
            state, endpoint, tested = WebhookState.MANUAL, "", None
            detail = (
                f"Set the channel's webhook URL by hand: this service's public URL followed by "
                f"{account.webhook_path} (BROADCASTER_PUBLIC_URL is not configured, so the "
                "service cannot set it)."
            )
        elif not isinstance(instance, SetsWebhooks):
            state, endpoint, tested = WebhookState.MANUAL, "", None
            detail = f"Set the channel's webhook URL by hand to {url}"
        else:
            try:
                setup = await instance.set_webhook(url)
            except CredentialsInvalid:
                await self._channels_refused(account)
                return WebhookState.UNKNOWN
            except ChannelUnavailable as e:
                setup = WebhookSetup(False, False, "", f"The channel's API is unreachable: {e}")
            state = (
                WebhookState.VERIFIED
                if setup.verified
                else (WebhookState.FAILING if not setup.set or setup.detail else WebhookState.SET)
            )
            endpoint, detail, tested = setup.endpoint, setup.detail, now
        await self._ctx.db.write(repo.set_webhook, account.id, state, endpoint, detail, tested)
        log.info("webhook of channel %s: %s", account.id, state.name.lower())
        return state

    async def _channels_refused(self, account: ChannelAccount) -> None:
        await mark_refused(self._ctx, self._hub, account.id, account.type)

    def start(self) -> None:
        if self.interval is None:
            log.info("follower syncs are not automatic (BROADCASTER_FOLLOWER_SYNC_INTERVAL=off)")
            return
        self._loop = asyncio.create_task(self._run(), name="channel-upkeep")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None

    async def resync_due(self) -> int:
        """Claim the channels whose re-sync is due (as many as there are free slots) and start
        their syncs; how many were claimed."""
        free = self.settings.concurrent - len(self._running)
        if free <= 0:
            return 0
        now = self._ctx.now()
        until = now + timedelta(seconds=self.settings.lease_seconds)
        due = await self._ctx.db.write(repo.claim_due_syncs, now=now, lease_until=until, limit=free)
        for channel_id in due:
            try:
                await self._resync(channel_id)
            except Exception:  # tried again once its claim lapses
                log.exception("re-syncing the followers of channel %s", channel_id)
        return len(due)

    async def _resync(self, channel_id: str) -> None:
        found = await self._ctx.db.read(get_any_merchant, channel_id)
        run, started = await self._syncer.start_for(channel_id)
        interval = self.interval or timedelta(days=1)  # (the loop runs only with one)
        await self._ctx.db.write(repo.schedule_sync, channel_id, self._ctx.now() + interval)
        channel_type = found[0].type if found is not None else "unknown"
        self._ctx.metrics.follower_resync(channel_type, "started" if started else "running")
        await refresh_health(self._ctx, channel_id)
        if started:  # holds one of this replica's slots until it ends
            task = asyncio.create_task(self._syncer.wait(run.id), name=f"resync-{channel_id}")
            self._running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _next_wait(self) -> float:
        poll = self.settings.safety_poll_seconds
        if len(self._running) >= self.settings.concurrent:
            return poll  # until a slot frees (which wakes the loop)
        nxt = await self._ctx.db.read(repo.next_sync_due)
        return seconds_until(nxt, self._ctx.now(), poll, 0.01)

    async def _step(self) -> float:
        await self.resync_due()
        return await self._next_wait()

    async def _run(self) -> None:
        await run_due(self._step, self._wake, log, "channel upkeep: looking for due re-syncs")
