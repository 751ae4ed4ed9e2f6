"""Channels: connect (verify with the channel, seal credentials), read, list, disconnect, quota."""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable, Mapping

from sqlalchemy import Connection

from broadcaster.channels import (
    Channel,
    ChannelUnavailable,
    CredentialsInvalid,
    Quota,
    RenewsCredentials,
)
from broadcaster.channels.registry import UnknownChannelType
from broadcaster.domain import rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
    collect,
)
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import ChannelAccount
from broadcaster.domain.names import ChannelName, MerchantName
from broadcaster.domain.reasons import Reason
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import (
    PendingCredentials,
    mark_refused,
    seal,
    unseal_value,
)
from broadcaster.services.health import refresh_health
from broadcaster.services.idempotent import create_once, recall, request_fingerprint
from broadcaster.services.listing import open_list
from broadcaster.store import channel_credentials, dispatch
from broadcaster.store import channels as repo
from broadcaster.store import upkeep as upkeep_repo

DEFAULT_PAGE, MAX_PAGE = 50, 1000
MAX_CREDENTIAL = 4096
CREATE = "CreateChannel"
GOODBYE_SECONDS = 5.0  # revoking a disconnected channel's issued credential
log = logging.getLogger(__name__)


def not_found(name: str) -> NotFound:
    return NotFound("channel", name, reason=Reason.CHANNEL_NOT_FOUND)


def credentials_invalid(error: CredentialsInvalid) -> FailedPrecondition:
    return FailedPrecondition(
        f"The channel refused the credentials: {error}. Check them in the channel's console "
        "and connect again.",
        reason=Reason.CHANNEL_CREDENTIALS_INVALID,
    )


# The least wait before calling again after CHANNEL_UNAVAILABLE (RetryInfo): the channel's
# client has already tried again with its own backoff before giving up.
CHANNEL_RETRY_SECONDS = 5.0


def unavailable(error: ChannelUnavailable) -> Unavailable:
    return Unavailable(
        f"The channel's API is unreachable: {error}",
        reason=Reason.CHANNEL_UNAVAILABLE,
        retry_after=CHANNEL_RETRY_SECONDS,
    )


class Channels:
    def __init__(
        self, ctx: ServiceContext, hub: ChannelHub, *, deleted: Callable[[], None] = lambda: None
    ) -> None:
        """`deleted`: called after a channel is deleted here (its contacts are to be forgotten,
        services.forgetting)."""
        self._ctx = ctx
        self._hub = hub
        self._deleted = deleted

    def name(self, caller: Caller, value: str, field: str = "name") -> ChannelName:
        name = ChannelName.parse(value, field)
        if not caller.may_act_for(name.merchant):
            raise not_found(value)
        return name

    def _check_credentials(
        self, v: Violations, channel_type: str, credentials: Mapping[str, str]
    ) -> None:
        try:
            channel = self._hub.registry.get(channel_type)
        except UnknownChannelType as e:
            installed = ", ".join(e.installed) or "none"
            what = "is required" if not channel_type else f"{channel_type[:64]!r} is not installed"
            v.add("channel.type", f"{what}; installed channel types: {installed}")
            return
        declared = {f.name: f for f in channel.credential_fields}
        for f in channel.credential_fields:
            if f.required and not credentials.get(f.name):
                v.add(f"channel.credentials[{f.name}]", f"is required: {f.description}")
        for key, value in credentials.items():
            if key not in declared:
                v.add(
                    f"channel.credentials[{key[:64]}]",
                    f"is not a {channel_type} credential; expected: {', '.join(declared)}",
                )
            elif len(value) > MAX_CREDENTIAL:
                v.add(f"channel.credentials[{key}]", f"must be at most {MAX_CREDENTIAL} characters")
            elif any(unicodedata.category(c) == "Cc" for c in value):
                # A line break in a token would split the header a plugin sends it in.
                v.add(f"channel.credentials[{key}]", "must not contain control characters")

    async def create(
        self,
        caller: Caller,
        parent: str,
        channel_type: str,
        credentials: Mapping[str, str],
        request_id: str,
    ) -> ChannelAccount:
        v = Violations()
        merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
        self._check_credentials(v, channel_type, credentials)
        rules.check_request_id(v, request_id)
        v.raise_if_any()
        assert merchant is not None
        caller.require(merchant.merchant)
        m = merchant.merchant

        request_hash = request_fingerprint(CREATE, parent, channel_type, dict(credentials))
        earlier = await recall(self._ctx.db, m, CREATE, request_id, request_hash)
        if earlier is not None:
            return await self.get(caller, earlier)

        # A channel that issues its own credentials (RenewsCredentials) issues the first while
        # connecting; it is stored with the channel, sealed, in the same transaction.
        pending = PendingCredentials()
        try:
            instance = self._hub.build(channel_type, credentials, issued=pending)
            account = await instance.connect()
        except CredentialsInvalid as e:
            raise credentials_invalid(e) from None
        except ChannelUnavailable as e:
            raise unavailable(e) from None
        sealed = self._hub.sealer.seal(credentials)
        issued = None if pending.issued is None else seal(self._hub.sealer, pending.issued)

        def create(conn: Connection) -> tuple[ChannelAccount, str]:
            existing = repo.find_live_account(conn, m, channel_type, account.account_id)
            if existing is not None:
                raise AlreadyExists(
                    f"This {channel_type} account is already connected as "
                    f"{ChannelName(m, existing.id)}.",
                    reason=Reason.CHANNEL_ALREADY_CONNECTED,
                    channel=str(ChannelName(m, existing.id)),
                )
            details = (
                account.tier,
                account.account_id,
                account.display_name,
                account.handle,
                account.picture_uri,
            )
            channel_id = new_id()
            if issued is not None:
                channel_credentials.create(conn, channel_id, issued)
            made = repo.create(
                conn,
                m,
                channel_id,
                channel_type,
                details,
                sealed,
                self._ctx.now(),
                issued=issued is not None,
            )
            return made, str(ChannelName(m, made.id))

        try:
            made = await create_once(
                self._ctx.db,
                m,
                CREATE,
                request_id,
                request_hash=request_hash,
                create=create,
                find=lambda conn, name: repo.get(conn, m, ChannelName.parse(name).channel),
                gone=not_found,
                now=self._ctx.now,
            )
        except BaseException:
            if pending.issued is not None:  # nothing keeps it: revoke it
                await self._goodbye(instance)
            raise
        if pending.issued is not None and (
            made.issued_credential is None
            or made.issued_credential.issue_time != pending.issued.issue_time
        ):
            await self._goodbye(instance)  # an earlier request's channel was answered instead
        return made

    async def get(self, caller: Caller, name: str) -> ChannelAccount:
        n = self.name(caller, name)
        found = await self._ctx.db.read(repo.get, n.merchant, n.channel)
        if found is None:
            raise not_found(name)
        return found

    async def list_page(
        self,
        caller: Caller,
        parent: str,
        page_size: int,
        page_token: str,
        needs_attention: bool = False,
    ) -> tuple[list[ChannelAccount], str]:
        """Newest first; with `needs_attention`, only channels with an open issue."""
        v = Violations()
        shape: tuple[str, ...] = (
            ("channels", "needs_attention") if needs_attention else ("channels",)
        )
        merchant, page, query = open_list(
            self._ctx.pages,
            caller,
            v,
            parent,
            page_size,
            page_token,
            shape,
            default=DEFAULT_PAGE,
            maximum=MAX_PAGE,
        )
        found = await self._ctx.db.read(
            repo.list_page, merchant, page, needs_attention=needs_attention
        )
        return found[: page.size], self._ctx.pages.next([c.id for c in found], page, query)

    async def delete(self, caller: Caller, name: str) -> None:
        """Disconnect the channel. Its sending broadcasts fail (`CHANNEL_NOT_CONNECTED`) in the
        same transaction, and this process's dispatcher stops sending with its credentials
        before this returns; other replicas stop within one lease renewal (engine.py)."""
        n = self.name(caller, name)
        now = self._ctx.now()

        def tx(conn: Connection) -> tuple[bool, tuple[str, str, str] | None]:
            found = repo.get_any_merchant(conn, n.channel)
            stored = channel_credentials.get(conn, n.channel)
            if not repo.disconnect(conn, n.merchant, n.channel, now):
                return False, None
            channel_credentials.forget(conn, n.channel)
            dispatch.fail_channel(conn, n.channel, Reason.CHANNEL_NOT_CONNECTED, now)
            if found is None or stored is None:
                return True, None
            return True, (found[0].type, found[1], stored.sealed)

        done, issued = await self._ctx.db.write(tx)
        if not done:
            raise not_found(name)
        self._ctx.events_recorded(n.merchant)  # the failed broadcasts' lifecycle events
        self._hub.gone(n.channel)
        self._deleted()
        if issued is not None:  # revoke what the channel issued for itself
            channel_type, sealed, sealed_issued = issued
            last = PendingCredentials(unseal_value(self._hub.sealer, sealed_issued))
            credentials = self._hub.sealer.open(sealed)
            try:
                instance = self._hub.build(channel_type, credentials, issued=last)
            except Exception:
                log.exception("channel %s: cannot open it to revoke its credential", n.channel)
                return
            await self._goodbye(instance)

    async def _goodbye(self, instance: Channel) -> None:
        """Revoke what a channel issued for itself, best effort and briefly."""
        if not isinstance(instance, RenewsCredentials):
            return
        try:
            async with asyncio.timeout(GOODBYE_SECONDS):
                await instance.disconnect()
        except Exception as e:  # it expires by itself
            log.warning("could not revoke a channel's issued credential: %s", e)

    async def live(
        self, caller: Caller, name: str, field: str = "name"
    ) -> tuple[ChannelAccount, Channel]:
        """The connected channel and its instance, for calls that talk to the channel."""
        n = self.name(caller, name, field)
        found = await self._hub.get(n.channel)
        if found is None or found[0].merchant != n.merchant:
            raise not_found(name)
        return found

    async def quota(self, caller: Caller, quota_name: str) -> tuple[ChannelName, Quota]:
        if not quota_name.endswith("/quota"):
            raise InvalidArgument(
                [FieldViolation("name", "must look like 'merchants/{m}/channels/{c}/quota'")]
            )
        channel_name = quota_name.removesuffix("/quota")
        account, instance = await self.live(caller, channel_name)
        try:
            quota = await instance.quota()
        except CredentialsInvalid as e:
            await self.mark_credentials_invalid(account)
            raise credentials_invalid(e) from None
        except ChannelUnavailable as e:
            raise unavailable(e) from None
        await self.record_quota(account.id, quota)
        return ChannelName.parse(channel_name), quota

    async def record_quota(self, channel_id: str, quota: Quota) -> None:
        """Keep the quota just read on the channel (its health reads it)."""
        await self._ctx.db.write(
            upkeep_repo.record_quota, channel_id, quota.limit, quota.used, self._ctx.now()
        )
        await refresh_health(self._ctx, channel_id)

    async def mark_credentials_invalid(self, account: ChannelAccount) -> None:
        await mark_refused(self._ctx, self._hub, account.id, account.type)
