"""Credentials channels issue for themselves (LINE: short-lived channel access tokens), kept for
them by the core: sealed at rest like the channel's own credentials, shared by every replica,
renewed by one replica at a time.

- `StoredCredentials`: a connected channel's store (`ChannelRuntime.credentials`). Renewing
  reads the stored credential; if it is still good it is used; otherwise the replica that wins
  the renewal lease (a compare-and-set on the credential's version) issues a new one and stores
  it, while the others keep using the old one as long as it is valid, or wait for the new one.
- `PendingCredentials`: the store of a channel being connected (CreateChannel), before it has
  an id; what the channel issued is stored with the new channel, in the same transaction.
- `Renewer`: renews the credentials that are due, so an idle channel keeps a valid one and the
  health view shows it (one pass a minute, on every replica; the lease keeps them from
  renewing the same one twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from broadcaster.channels import (
    ChannelError,
    ChannelUnavailable,
    CredentialsInvalid,
    IssuedCredential,
    RenewsCredentials,
)
from broadcaster.services.context import ServiceContext
from broadcaster.services.health import refresh_health
from broadcaster.store import channel_credentials as store
from broadcaster.store import channels as channel_repo
from broadcaster.store.sealing import Sealer

if TYPE_CHECKING:
    from broadcaster.services.channel_hub import ChannelHub

log = logging.getLogger(__name__)

RENEWAL_LEASE = timedelta(seconds=30)  # how long a replica may take to issue a credential
WAIT_SECONDS = 30.0  # how long to wait for another replica's renewal of an unusable credential
WAIT_STEP = 0.1
RENEWER_PERIOD = 60.0
RENEWER_BATCH = 100


def seal(sealer: Sealer, credential: IssuedCredential) -> store.NewCredential:
    return store.NewCredential(
        sealed=sealer.seal({"value": credential.value, "key_id": credential.key_id}),
        issue_time=credential.issue_time,
        renew_time=credential.renew_time,
        expire_time=credential.expire_time,
    )


def unseal(sealer: Sealer, stored: store.StoredCredential) -> IssuedCredential:
    opened = sealer.open(stored.sealed)
    return IssuedCredential(
        value=opened["value"],
        issue_time=stored.status.issue_time,
        renew_time=stored.status.renew_time,
        expire_time=stored.status.expire_time,
        key_id=opened.get("key_id", ""),
    )


def unseal_value(sealer: Sealer, sealed: str) -> IssuedCredential:
    """A credential from its sealed value alone (times unknown: it is only to be revoked)."""
    opened = sealer.open(sealed)
    never = datetime.min.replace(tzinfo=UTC)
    return IssuedCredential(opened["value"], never, never, never, opened.get("key_id", ""))


class StoredCredentials:
    """One connected channel's issued credential, in the database."""

    def __init__(
        self,
        ctx: ServiceContext,
        sealer: Sealer,
        channel_id: str,
        channel_type: str,
        owner: str,
        *,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._ctx = ctx
        self._sealer = sealer
        self._channel = channel_id
        self._type = channel_type
        self._owner = owner
        self._wait = wait_seconds

    def __repr__(self) -> str:
        return f"StoredCredentials({self._channel!r})"

    async def current(self) -> IssuedCredential | None:
        stored = await self._ctx.db.read(store.get, self._channel)
        return None if stored is None else unseal(self._sealer, stored)

    async def renew(
        self,
        issue: Callable[[], Awaitable[IssuedCredential]],
        *,
        refused: str | None = None,
    ) -> IssuedCredential:
        deadline = time.monotonic() + self._wait
        while True:
            stored = await self._ctx.db.read(store.get, self._channel)
            now = self._ctx.now()
            if stored is None:  # stored at connect, forgotten at disconnect
                raise CredentialsInvalid("the channel was disconnected: it has no credential")
            credential = unseal(self._sealer, stored)
            usable = credential.value != refused and credential.expire_time > now
            if usable and credential.renew_time > now:
                return credential
            if stored.lease_expiry <= now:
                # Each attempt under its own name, so only it may store what it issued.
                attempt = f"{self._owner}:{uuid.uuid4().hex[:12]}"
                until = now + RENEWAL_LEASE
                taken = await self._ctx.db.write(
                    store.take_renewal, self._channel, stored.version, attempt, until, now
                )
                if taken:
                    return await self._issue(issue, attempt)
                continue  # another replica took it (or renewed) since the read: look again
            if usable:  # another replica is renewing: the current one serves meanwhile
                return credential
            if time.monotonic() > deadline:
                raise ChannelUnavailable(
                    "another replica is renewing the channel's credential and has not finished"
                )
            await asyncio.sleep(WAIT_STEP)

    async def _issue(
        self, issue: Callable[[], Awaitable[IssuedCredential]], attempt: str
    ) -> IssuedCredential:
        try:
            credential = await issue()
        except BaseException as e:
            self._ctx.metrics.credential_renewal(self._type, "failed")
            with contextlib.suppress(Exception):
                await self._ctx.db.write(store.release, self._channel, attempt)
            if isinstance(e, CredentialsInvalid):
                # The channel refuses the long-term credentials themselves: whichever call
                # needed the token, the channel says so (until it is connected again).
                now = self._ctx.now()
                if await self._ctx.db.write(
                    channel_repo.mark_credentials_invalid, self._channel, now
                ):
                    self._ctx.metrics.credential_refused(self._type)
            raise
        sealed = seal(self._sealer, credential)
        if not await self._ctx.db.write(store.store_renewed, self._channel, attempt, sealed):
            # The lease ran out while issuing and another replica renewed: theirs is stored.
            log.warning("channel %s: renewal lease lost while renewing", self._channel)
        self._ctx.metrics.credential_renewal(self._type, "renewed")
        return credential


class PendingCredentials:
    """The store of a channel being connected: it has no id yet, so what it issues is held
    here until the channel is stored (CreateChannel), or revoked if it never is."""

    def __init__(self, issued: IssuedCredential | None = None) -> None:
        self.issued = issued

    def __repr__(self) -> str:
        return "PendingCredentials()"

    async def current(self) -> IssuedCredential | None:
        return self.issued

    async def renew(
        self,
        issue: Callable[[], Awaitable[IssuedCredential]],
        *,
        refused: str | None = None,
    ) -> IssuedCredential:
        held = self.issued
        if held is not None and held.value != refused and held.renew_time > datetime.now(UTC):
            return held
        self.issued = await issue()
        return self.issued


class Renewer:
    """Renews the issued credentials that are due, a batch per pass, on every replica."""

    def __init__(
        self, ctx: ServiceContext, hub: ChannelHub, *, period: float = RENEWER_PERIOD
    ) -> None:
        self._ctx = ctx
        self._hub = hub
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="credential-renewer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.renew_due()
            except Exception:
                log.exception("renewing channel credentials failed; trying again later")
            await asyncio.sleep(self._period)

    async def renew_due(self) -> int:
        """One pass: renew each due credential; returns how many channels were looked at."""
        due = await self._ctx.db.read(store.due, self._ctx.now(), RENEWER_BATCH)
        for channel_id in due:
            try:
                await self._renew(channel_id)
            except Exception:  # one channel's trouble must not keep the others from renewing
                log.exception("channel %s: renewing its credential failed", channel_id)
        return len(due)

    async def _renew(self, channel_id: str) -> None:
        found = await self._hub.get(channel_id)
        if found is None:
            return
        account, instance = found
        if not isinstance(instance, RenewsCredentials):
            return
        try:
            await instance.renew_credentials()
        except CredentialsInvalid as e:
            log.warning("channel %s: the channel refused its credentials: %s", channel_id, e)
            await mark_refused(self._ctx, self._hub, account.id, account.type)
            return
        except ChannelError as e:
            log.warning("channel %s: could not renew its credential: %s", channel_id, e)
        # Renewed, or not (its credential is expiring): the channel's health says which.
        await refresh_health(self._ctx, channel_id)


async def mark_refused(ctx: ServiceContext, hub: ChannelHub, channel_id: str, kind: str) -> None:
    """The channel refused the account's credentials: the channel says so (health view, sends
    fail with CHANNEL_CREDENTIALS_INVALID) and the refusal is counted."""
    if await ctx.db.write(channel_repo.mark_credentials_invalid, channel_id, ctx.now()):
        ctx.metrics.credential_refused(kind)
    hub.forget(channel_id)
    await refresh_health(ctx, channel_id)
