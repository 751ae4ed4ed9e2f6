"""Contact sync: the channel's follower list into contacts, then their profiles.

A run is a row (store.syncs) leased to one process. Each page is committed together with the
cursor that follows it and the run's counters, so a run whose process dies is taken over by
another (or the restarted one) when its lease expires, and resumes after the last committed
page. Calling SyncContacts while a run is going reports that run instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from broadcaster import logs, tracing
from broadcaster.channels import (
    Channel,
    ChannelUnavailable,
    ContactsNotListable,
    CredentialsInvalid,
)
from broadcaster.domain.auth import Caller
from broadcaster.domain.model import (
    AccountTier,
    ChannelAccount,
    ChannelState,
    ContactImport,
    ContactSyncRun,
    FollowerState,
    SyncState,
)
from broadcaster.domain.reasons import Reason
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.health import refresh_health
from broadcaster.store import channel_contacts, syncs, upkeep
from broadcaster.store import channels as channel_repo
from broadcaster.store import contacts as contact_repo

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 60
PROFILE_BATCH = 500
WRITE_BATCH = 5000
UNAVAILABLE_RETRIES = 5


async def _prefetch(pages: AsyncIterator[T], depth: int) -> AsyncIterator[T]:
    """Fetch up to `depth` pages ahead while the caller writes the current one."""
    queue: asyncio.Queue[tuple[T | None, BaseException | None, bool]] = asyncio.Queue(depth)

    async def produce() -> None:
        try:
            async for page in pages:
                await queue.put((page, None, False))
            await queue.put((None, None, True))
        except Exception as e:  # handed to the consumer, which raises it in order
            await queue.put((None, e, True))

    producer = asyncio.create_task(produce())
    try:
        while True:
            page, error, done = await queue.get()
            if error is not None:
                raise error
            if done:
                return
            assert page is not None
            yield page
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


class Superseded(Exception):
    """Another process took the run over (our lease lapsed)."""


class ContactSyncer:
    def __init__(self, ctx: ServiceContext, hub: ChannelHub, channels: Channels) -> None:
        self._ctx = ctx
        self._hub = hub
        self._channels = channels
        self.owner = uuid.uuid4().hex
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def _lease(self) -> datetime:
        return self._ctx.now() + timedelta(seconds=LEASE_SECONDS)

    async def start(self, caller: Caller, name: str) -> ContactSyncRun:
        account, _ = await self._channels.live(caller, name)
        run, _started = await self.start_for(account.id)
        return run

    async def start_for(self, channel_id: str) -> tuple[ContactSyncRun, bool]:
        """Start a sync of the channel, or report the one running: (the run, whether this call
        started it). Never two at once: the running sync's unique index refuses a second."""
        try:
            run = await self._ctx.db.write(
                syncs.start, channel_id, self.owner, self._lease(), self._ctx.now()
            )
        except IntegrityError:  # one is running already: report it
            running = await self._ctx.db.read(syncs.latest, channel_id)
            assert running is not None
            return running, False
        self._spawn(run.id)
        return run, True

    def _spawn(self, run_id: int) -> None:
        if run_id not in self._tasks:
            task = asyncio.create_task(self._run(run_id), name=f"contact-sync-{run_id}")
            self._tasks[run_id] = task
            task.add_done_callback(lambda t: self._done(run_id, t))

    def _done(self, run_id: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("contact sync %s stopped", run_id, exc_info=task.exception())

    def watch(self, interval: float = LEASE_SECONDS / 2) -> None:
        """Resume orphaned runs now and every `interval` seconds."""

        async def loop() -> None:
            while True:
                try:
                    ids = await self._ctx.db.write(
                        syncs.claim_orphans, self.owner, self._lease(), self._ctx.now()
                    )
                    for run_id in ids:
                        log.info("resuming contact sync %s", run_id)
                        self._spawn(run_id)
                except Exception:
                    log.exception("could not look for orphaned contact syncs")
                await asyncio.sleep(interval)

        self._watcher = asyncio.create_task(loop(), name="contact-sync-watcher")

    async def stop(self) -> None:
        tasks = [t for t in (self._watcher, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self, run_id: int) -> None:
        """Until the run this process is doing ends (tests and benchmarks)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    async def _finish(
        self,
        run_id: int,
        state: SyncState,
        channel_type: str,
        *,
        reason: str = "",
        message: str = "",
    ) -> None:
        await self._ctx.db.write(
            syncs.finish, run_id, state, self._ctx.now(), reason=reason, message=message
        )
        self._ended(run_id, state, channel_type, reason)

    def _ended(self, run_id: int, state: SyncState, channel_type: str, reason: str = "") -> None:
        self._ctx.metrics.sync_finished(channel_type, state.name.lower())
        tracing.annotate({"broadcaster.sync_state": state.name, "broadcaster.reason": reason})
        log.info(
            "contact sync %s %s%s", run_id, state.name.lower(), f": {reason}" if reason else ""
        )

    async def _run(self, run_id: int) -> None:
        # A SyncContacts call's run is a child of that call's span (the task inherits its
        # context); a run resumed from another process starts a trace of its own. The
        # channel's requests (follower pages, profiles) are children of this span.
        with (
            self._ctx.metrics.sync_running(),
            tracing.span("contact sync", {"broadcaster.sync_run": run_id}),
        ):
            await self._execute(run_id)
        run = await self._ctx.db.read(syncs.get, run_id)
        if run is not None and run.state != SyncState.RUNNING:  # it ended here: its health
            await refresh_health(self._ctx, run.channel)

    async def _execute(self, run_id: int) -> None:
        run = await self._ctx.db.read(syncs.get, run_id)
        if run is None or run.state != SyncState.RUNNING:
            return
        logs.channel.set(run.channel)  # this task's own context
        found = await self._hub.get(run.channel)
        if found is None:
            await self._finish(
                run_id,
                SyncState.FAILED,
                "unknown",
                reason=Reason.CHANNEL_NOT_FOUND,
                message="disconnected",
            )
            return
        account, instance = found
        logs.merchant.set(account.merchant)
        tracing.annotate(
            {
                "broadcaster.merchant": account.merchant,
                "broadcaster.channel": account.id,
                "broadcaster.channel_type": account.type,
                "broadcaster.sync_phase": run.phase,
            }
        )
        log.info("contact sync %s running (phase %s)", run_id, run.phase)
        kind = account.type
        attempt = 0
        while True:
            try:
                await self._sync(run, account, instance)
                return
            except Superseded:
                log.info("contact sync %s continues in another process", run_id)
                return
            except ContactsNotListable as e:
                await self._finish(run_id, SyncState.SKIPPED, kind, message=str(e))
                return
            except CredentialsInvalid as e:
                await self._channels.mark_credentials_invalid(account)
                await self._finish(
                    run_id,
                    SyncState.FAILED,
                    kind,
                    reason=Reason.CHANNEL_CREDENTIALS_INVALID,
                    message=f"the channel refused the credentials: {e}",
                )
                return
            except ChannelUnavailable as e:
                attempt += 1
                if attempt > UNAVAILABLE_RETRIES:
                    await self._finish(
                        run_id,
                        SyncState.FAILED,
                        kind,
                        reason=Reason.CHANNEL_UNAVAILABLE,
                        message=str(e),
                    )
                    return
                await asyncio.sleep(min(2**attempt, 30))
                reloaded = await self._ctx.db.read(syncs.get, run_id)
                assert reloaded is not None
                run = reloaded
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("contact sync %s failed", run_id)
                await self._finish(
                    run_id, SyncState.FAILED, kind, reason=Reason.INTERNAL, message=str(e)
                )
                return

    async def _sync(self, run: ContactSyncRun, account: ChannelAccount, instance: Channel) -> None:
        info = await instance.connect()  # the tier is re-checked on every sync
        if info.tier != account.tier:
            await self._ctx.db.write(
                channel_repo.set_tier_and_state,
                account.id,
                AccountTier(info.tier),
                ChannelState.CONNECTED,
                self._ctx.now(),
            )
            self._hub.forget(account.id)
        m, ch, run_id = account.merchant, account.id, run.id
        metrics = self._ctx.metrics
        if run.phase == 1:
            followers: list[tuple[str, str, str]] = []
            async for page in _prefetch(instance.sync_contacts(run.cursor), depth=4):
                followers += [(c.external_id, c.display_name, c.picture_uri) for c in page.contacts]
                # Several pages per transaction: random keys touch fewer index pages per row.
                if len(followers) >= WRITE_BATCH or page.cursor is None:
                    await self._ctx.db.write(
                        self._commit_followers, run_id, m, ch, followers, page.cursor
                    )
                    metrics.sync_progress(account.type, contacts=len(followers))
                    followers = []
            if followers:  # a channel whose last page still carried a cursor
                await self._ctx.db.write(self._commit_followers, run_id, m, ch, followers, None)
                metrics.sync_progress(account.type, contacts=len(followers))

            def end_listing(conn: Connection) -> int:
                unfollowed = channel_contacts.mark_unlisted_blocked(
                    conn, m, ch, run_id, run.start_time, self._ctx.now()
                )
                syncs.record_page(conn, run_id, cursor=None, synced=0, created=0, phase=2)
                syncs.finish_listing(conn, run_id, unfollowed)
                upkeep.followers_listed(conn, ch, self._ctx.now())
                return unfollowed

            await self._ctx.db.write(end_listing)
        await self._fetch_profiles(run, account, instance)
        await self._ctx.db.write(syncs.succeed, run_id, self._ctx.now())
        self._ended(run_id, SyncState.SUCCEEDED, account.type)

    def _commit_followers(
        self,
        conn: Connection,
        run_id: int,
        merchant: str,
        channel: str,
        followers: list[tuple[str, str, str]],
        cursor: str | None,
    ) -> None:
        """Record followers with the cursor after them, in one transaction under our lease."""
        if not syncs.renew(conn, run_id, self.owner, self._lease()):
            raise Superseded
        created = 0
        if followers:
            created = channel_contacts.record_followers(
                conn, merchant, channel, run_id, followers, self._ctx.now()
            )
        syncs.record_page(conn, run_id, cursor=cursor, synced=len(followers), created=created)

    async def _fetch_profiles(
        self, run: ContactSyncRun, account: ChannelAccount, instance: Channel
    ) -> None:
        m, ch = account.merchant, account.id
        after = run.profile_cursor
        while True:
            missing = await self._ctx.db.read(
                channel_contacts.missing_profiles, m, ch, after, PROFILE_BATCH
            )
            if not missing:
                return
            profiles = await instance.fetch_profiles([ext for _, ext in missing])
            now = self._ctx.now()
            imports = [
                ContactImport(
                    external_id=p.external_id,
                    display_name=p.display_name,
                    picture_uri=p.picture_uri,
                    follower_state=FollowerState.UNKNOWN,
                    last_interaction_time=None,
                    opted_out=False,
                    customer_id=None,
                    observe_time=now,
                )
                for p in profiles
                if p.display_name or p.picture_uri
            ]
            after = missing[-1][0]

            def commit(
                conn: Connection, imports: list[ContactImport] = imports, cursor: str = after
            ) -> None:
                if not syncs.renew(conn, run.id, self.owner, self._lease()):
                    raise Superseded
                if imports:
                    contact_repo.merge(conn, m, ch, imports, self._ctx.now())
                syncs.record_profiles(conn, run.id, cursor, len(imports))

            await self._ctx.db.write(commit)
            self._ctx.metrics.sync_progress(account.type, profiles=len(imports))
