"""Broadcast drafts: create, read, search, edit, delete, copy, and estimate their audience."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection

from broadcaster.channels import (
    AccountInfo,
    Channel,
    ChannelUnavailable,
    CredentialsInvalid,
    Quota,
)
from broadcaster.domain import rules
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.auth import Caller
from broadcaster.domain.broadcasts import (
    Broadcast,
    BroadcastState,
    Estimate,
    ListFilter,
    ListOrder,
    RecipientLimit,
    copy_name,
)
from broadcaster.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    NotFound,
    PreconditionViolation,
    Violations,
    collect,
)
from broadcaster.domain.health import followers_complete
from broadcaster.domain.ids import new_id
from broadcaster.domain.messages import (
    MAX_EMOJIS,
    TEXT,
    ChannelCheck,
    ChannelNativeMessage,
    CheckResult,
    Message,
    TextMessage,
    kind_of,
)
from broadcaster.domain.model import ChannelAccount
from broadcaster.domain.names import BroadcastName, ChannelName, CustomerGroupName, MerchantName
from broadcaster.domain.reasons import Reason
from broadcaster.domain.statistics import Statistics
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import credentials_invalid, unavailable
from broadcaster.services.context import ServiceContext
from broadcaster.services.idempotent import create_once, recall, request_fingerprint
from broadcaster.services.listing import open_list
from broadcaster.services.quotas import QuotaCache
from broadcaster.store import audience as audience_repo
from broadcaster.store import broadcasts as repo
from broadcaster.store import groups as group_repo
from broadcaster.store import snapshot
from broadcaster.store import statistics as statistics_repo
from broadcaster.store import test_sends as test_send_repo
from broadcaster.store import upkeep as upkeep_repo

DEFAULT_PAGE, MAX_PAGE = 50, 1000
# How long a channel's own check of a draft's messages may take before the draft is saved
# without it (an outage must not block editing).
CHANNEL_CHECK_SECONDS = 3.0
CREATE, COPY = "CreateBroadcast", "CopyBroadcast"
EDITABLE = frozenset({"display_name", "channel", "audience", "messages", "notification_disabled"})


@dataclass(frozen=True, slots=True)
class DraftInput:
    """A draft as the caller wrote it."""

    display_name: str
    channel: str  # resource name
    window: InteractionWindow | None  # None: unset (or not a window the service knows)
    customer_groups: tuple[str, ...]
    messages: tuple[Message | None, ...]  # None: a bubble with no content
    notification_disabled: bool = False


@dataclass(frozen=True, slots=True)
class ListQuery:
    """ListBroadcasts' filters and order as the caller wrote them."""

    contains: str = ""
    state: BroadcastState | None = None
    channel: str = ""  # resource name
    channel_type: str = ""
    sent_after: datetime | None = None
    sent_before: datetime | None = None
    order_by: str = ""


_ORDER_BY = {o.value: o for o in ListOrder}


@dataclass(frozen=True, slots=True)
class _Checked:
    merchant: str
    channel: ChannelName
    audience: Audience


def not_found(name: str) -> NotFound:
    return NotFound("broadcast", name, reason=Reason.BROADCAST_NOT_FOUND)


def channel_not_connected(name: str) -> FailedPrecondition:
    return FailedPrecondition(
        "Connect your channel first: this channel is not connected.",
        reason=Reason.CHANNEL_NOT_CONNECTED,
        violations=[
            PreconditionViolation("CHANNEL", name, "connect the channel with CreateChannel")
        ],
        channel=name,
    )


def check_kinds(
    v: Violations, channel: type[Channel], messages: tuple[Message, ...], field: str
) -> None:
    """Each bubble is of a kind the channel declares (and a text's emoji, only where its `text`
    kind has a `max_emojis` limit): the core refuses the rest before the plugin sees them."""
    caps = channel.capabilities
    declared = ", ".join(k.kind for k in caps.message_kinds)
    for i, m in enumerate(messages):
        kind = kind_of(m)
        found = caps.kind(kind)
        if found is None:
            v.add(
                f"{field}[{i}].{kind}",
                f"{channel.display_name} channels do not take {kind} messages; they take: "
                f"{declared}",
                Reason.MESSAGE_KIND_UNSUPPORTED,
            )
        elif isinstance(m, TextMessage) and m.emojis and MAX_EMOJIS not in found.limits:
            v.add(
                f"{field}[{i}].{TEXT}.emojis",
                f"{channel.display_name} channels do not take emoji in text",
                Reason.MESSAGE_KIND_UNSUPPORTED,
            )


async def channel_check(
    instance: Channel, messages: tuple[Message, ...]
) -> tuple[CheckResult, list[FieldViolation]]:
    """The channel's own check of messages that met its local rules, within
    CHANNEL_CHECK_SECONDS; UNAVAILABLE when it cannot answer, never an error."""
    try:
        async with asyncio.timeout(CHANNEL_CHECK_SECONDS):
            found = await instance.check_messages(messages)
    except (ChannelUnavailable, CredentialsInvalid) as e:
        return CheckResult(ChannelCheck.UNAVAILABLE, f"the channel could not check them: {e}"), []
    except TimeoutError:
        text = f"the channel did not answer within {CHANNEL_CHECK_SECONDS:g} s"
        return CheckResult(ChannelCheck.UNAVAILABLE, text), []
    if found is None:
        return CheckResult(ChannelCheck.NOT_CHECKED), []
    if not found:
        return CheckResult(ChannelCheck.ACCEPTED), []
    detail = "; ".join(f"{v.field}: {v.description}" for v in found)
    return CheckResult(ChannelCheck.REFUSED, detail), list(found)


def account_info(account: ChannelAccount) -> AccountInfo:
    return AccountInfo(account.account_id, account.display_name, account.tier)


class Broadcasts:
    def __init__(self, ctx: ServiceContext, hub: ChannelHub) -> None:
        self._ctx = ctx
        self._hub = hub
        self._quotas = QuotaCache()

    def name_of(self, caller: Caller, value: str, field: str = "name") -> BroadcastName:
        name = BroadcastName.parse(value, field)
        if not caller.may_act_for(name.merchant):
            raise not_found(value)
        return name

    def _check_audience(
        self,
        v: Violations,
        merchant: str | None,
        window: InteractionWindow | None,
        groups: tuple[str, ...],
        field: str,
    ) -> Audience | None:
        if window is None:
            v.add(
                f"{field}.last_interaction",
                "is required: LAST_24_HOURS, LAST_72_HOURS, LAST_7_DAYS, LAST_30_DAYS, "
                "LAST_365_DAYS or ALL_CONTACTS",
            )
        group: str | None = None
        if len(groups) > 1:
            v.add(f"{field}.customer_groups", "at most one customer group per broadcast")
        elif groups:
            g_field = f"{field}.customer_groups[0]"
            parsed = collect(v, lambda: CustomerGroupName.parse(groups[0], g_field))
            if parsed is not None:
                if merchant is not None and parsed.merchant != merchant:
                    v.add(g_field, "must be a customer group of the same merchant")
                group = parsed.group
        return None if window is None else Audience(window, group)

    def _check_channel(
        self, v: Violations, merchant: str | None, channel: str, field: str
    ) -> ChannelName | None:
        parsed = collect(v, lambda: ChannelName.parse(channel, field))
        if parsed is not None and merchant is not None and parsed.merchant != merchant:
            v.add(field, "must be a channel of the same merchant")
        return parsed

    async def live(self, channel: ChannelName) -> tuple[ChannelAccount, Channel]:
        found = await self._hub.get(channel.channel)
        if found is None or found[0].merchant != channel.merchant:
            raise channel_not_connected(str(channel))
        return found

    async def quota(
        self, channel: ChannelName, instance: Channel, cache: QuotaCache | None = None
    ) -> Quota:
        """The channel's quota, from `cache` when given (else asked now), its failures as
        domain errors."""
        try:
            if cache is not None:
                return await cache.quota(channel.channel, instance)
            return await instance.quota()
        except CredentialsInvalid as e:
            raise credentials_invalid(e) from None
        except ChannelUnavailable as e:
            raise unavailable(e) from None

    def quota_spent(self, channel_id: str) -> None:
        """Messages went out on the channel outside a broadcast (a test send): estimates read
        its quota afresh."""
        self._quotas.forget(channel_id)

    async def group_name(self, merchant: str, audience: Audience) -> str:
        if audience.customer_group is None:
            return ""
        group = await self._ctx.db.read_point(group_repo.get, merchant, audience.customer_group)
        if group is None:
            name = str(CustomerGroupName(merchant, audience.customer_group))
            raise NotFound("customer group", name, reason=Reason.CUSTOMER_GROUP_NOT_FOUND)
        return group.display_name

    def require_group(self, conn: Connection, b: Broadcast) -> None:
        """The draft's customer group still exists, and cannot be deleted before this
        transaction commits (a key-share lock on PostgreSQL; SQLite writes one at a time):
        DeleteCustomerGroup then sees the draft and refuses."""
        group = b.audience.customer_group
        if group is not None and group_repo.get(conn, b.merchant, group, share=True) is None:
            name = str(CustomerGroupName(b.merchant, group))
            raise NotFound("customer group", name, reason=Reason.CUSTOMER_GROUP_NOT_FOUND)

    def require_eligible(
        self, instance: Channel, account: ChannelAccount, audience: Audience
    ) -> None:
        verdict = instance.check_eligibility(audience, account_info(account))
        if not verdict.eligible:
            raise FailedPrecondition(
                verdict.message,
                reason=verdict.reason or Reason.AUDIENCE_NOT_ELIGIBLE,
                violations=[PreconditionViolation("AUDIENCE", "last_interaction", verdict.message)],
            )

    async def _check_draft(
        self, merchant: str | None, draft: DraftInput, field: str, v: Violations
    ) -> tuple[_Checked, tuple[Message, ...], str]:
        """Validate everything about a draft; returns it checked, its messages, group name."""
        rules.check_display_name(v, draft.display_name, f"{field}.display_name")
        channel = self._check_channel(v, merchant, draft.channel, f"{field}.channel")
        audience = self._check_audience(
            v, merchant, draft.window, draft.customer_groups, f"{field}.audience"
        )
        if not draft.messages:
            v.add(f"{field}.messages", "must hold at least one message")
        for i, m in enumerate(draft.messages):
            if m is None:
                v.add(f"{field}.messages[{i}]", "must hold content: text, image, sticker, …")
        v.raise_if_any()
        assert merchant is not None and channel is not None and audience is not None
        account, instance = await self.live(channel)
        messages = tuple(m for m in draft.messages if m is not None)
        limit = type(instance).capabilities.max_messages
        if len(messages) > limit:
            v.add(f"{field}.messages", f"must hold at most {limit} messages, got {len(messages)}")
        check_kinds(v, type(instance), messages, f"{field}.messages")
        v.raise_if_any()
        for violation in instance.validate_messages(messages):
            v.add(f"{field}.{violation.field}", violation.description, violation.reason)
        v.raise_if_any()
        _, refused = await channel_check(instance, messages)
        for violation in refused:
            v.add(f"{field}.{violation.field}", violation.description, violation.reason)
        v.raise_if_any()
        messages = tuple(
            replace(m, preview=instance.preview_native(m))
            if isinstance(m, ChannelNativeMessage)
            else m
            for m in messages
        )
        group_name = await self.group_name(merchant, audience)
        self.require_eligible(instance, account, audience)
        return _Checked(merchant, channel, audience), messages, group_name

    async def create(
        self,
        caller: Caller,
        parent: str,
        draft: DraftInput,
        request_id: str,
        copied_from: str = "",
        resend_of: str = "",
        *,
        method: str = CREATE,
        request_hash: str = "",
    ) -> Broadcast:
        """`method` and `request_hash` name the request for its request id: CreateBroadcast and
        the draft by default; CopyBroadcast passes its own."""
        v = Violations()
        merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
        rules.check_request_id(v, request_id)
        if merchant is not None:
            caller.require(merchant.merchant)
        m = merchant.merchant if merchant else None
        request_hash = request_hash or request_fingerprint(method, parent, draft)
        if request_id and m is not None:
            earlier = await recall(self._ctx.db, m, method, request_id, request_hash)
            if earlier is not None:
                return await self.get(caller, earlier)
        checked, messages, group_name = await self._check_draft(m, draft, "broadcast", v)
        now = self._ctx.now()
        made = Broadcast(
            merchant=checked.merchant,
            id=new_id(),
            display_name=draft.display_name,
            channel=checked.channel.channel,
            audience=checked.audience,
            messages=messages,
            notification_disabled=draft.notification_disabled,
            state=BroadcastState.DRAFT,
            group_name=group_name,
            create_time=now,
            update_time=now,
            copied_from=copied_from,
            resend_of=resend_of,
        )

        def create(conn: Connection) -> tuple[Broadcast, str]:
            self.require_group(conn, made)
            return repo.create(conn, made), str(BroadcastName(made.merchant, made.id))

        return await create_once(
            self._ctx.db,
            made.merchant,
            method,
            request_id,
            request_hash=request_hash,
            create=create,
            find=lambda conn, name: repo.get(
                conn, made.merchant, BroadcastName.parse(name).broadcast
            ),
            gone=not_found,
            now=self._ctx.now,
        )

    async def get(self, caller: Caller, name: str) -> Broadcast:
        n = self.name_of(caller, name)
        found = await self._ctx.db.read_point(repo.get, n.merchant, n.broadcast)
        if found is None:
            raise not_found(name)
        return found

    async def statistics(self, caller: Caller, name: str) -> Statistics:
        """The broadcast's statistics as last read from its channel (GetBroadcastStatistics)."""
        n = self.name_of(caller, name)
        found = await self._ctx.db.read_point(statistics_repo.get, n.merchant, n.broadcast)
        if found is None:
            raise not_found(name)
        return found

    async def list_page(
        self,
        caller: Caller,
        parent: str,
        page_size: int,
        page_token: str,
        query: ListQuery,
    ) -> tuple[list[Broadcast], str]:
        """A page of the merchant's broadcasts, filtered and ordered as `query` says."""
        v = Violations()
        contains = query.contains
        rules.check_optional_text(v, contains, "display_name_contains", rules.MAX_DISPLAY_NAME)
        # (open_list reports a bad parent; here it only scopes the channel check)
        merchant_name = collect(Violations(), lambda: MerchantName.parse(parent, "parent"))
        m = merchant_name.merchant if merchant_name else None
        channel = None
        if query.channel:
            channel = self._check_channel(v, m, query.channel, "channel")
        if query.channel_type and not rules.is_printable_id(query.channel_type, 32):
            v.add("channel_type", "must be a channel type such as line (at most 32 characters)")
        after, before = query.sent_after, query.sent_before
        if after is not None and before is not None and after >= before:
            v.add("send_time_before", "must be later than send_time_after")
        order = _ORDER_BY.get(" ".join(query.order_by.lower().split()) or "create_time desc")
        if order is None:
            v.add("order_by", f"must be one of: {', '.join(o.value for o in ListOrder)}")
        f = ListFilter(
            contains,
            query.state,
            None if channel is None else channel.channel,
            query.channel_type,
            after,
            before,
            order or ListOrder.CREATE_TIME_DESC,
        )
        # Every field that shapes the result: a token is good only for the same list.
        shape = (
            "broadcasts",
            contains,
            0 if f.state is None else int(f.state),
            f.channel or "",
            f.channel_type,
            None if after is None else after.isoformat(),
            None if before is None else before.isoformat(),
            f.order.value,
        )
        merchant, page, key = open_list(
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
        found = await self._ctx.db.read_point(repo.list_page, merchant, f, page)
        token = self._ctx.pages.next([k for _, k in found], page, key)
        return [b for b, _ in found[: page.size]], token

    async def update(
        self, caller: Caller, name: str, paths: list[str], draft: DraftInput
    ) -> Broadcast:
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(name, "broadcast.name"))
        fields = set(EDITABLE) if paths == ["*"] else set(paths)
        if not paths:
            v.add("update_mask", f"must name the fields to change: {', '.join(sorted(EDITABLE))}")
        for p in sorted(fields - EDITABLE):
            v.add("update_mask", f"names {p[:100]!r}; editable: {', '.join(sorted(EDITABLE))}")
        v.raise_if_any()
        assert n is not None
        if not caller.may_act_for(n.merchant):
            raise not_found(name)
        current = await self.get(caller, name)
        current.require_draft()
        merged = DraftInput(
            display_name=draft.display_name if "display_name" in fields else current.display_name,
            channel=draft.channel
            if "channel" in fields
            else str(ChannelName(n.merchant, current.channel)),
            window=draft.window if "audience" in fields else current.audience.window,
            customer_groups=draft.customer_groups
            if "audience" in fields
            else _group_names(n.merchant, current.audience),
            messages=draft.messages if "messages" in fields else current.messages,
            notification_disabled=draft.notification_disabled
            if "notification_disabled" in fields
            else current.notification_disabled,
        )
        checked, messages, group_name = await self._check_draft(n.merchant, merged, "broadcast", v)
        edited = replace(
            current,
            display_name=merged.display_name,
            channel=checked.channel.channel,
            audience=checked.audience,
            messages=messages,
            notification_disabled=merged.notification_disabled,
            group_name=group_name,
            update_time=self._ctx.now(),
            # A new audience replaces a resend's "recipients not reached".
            resend_of="" if "audience" in fields else current.resend_of,
        )

        def tx(conn: Connection) -> Broadcast:
            latest = repo.get(conn, n.merchant, n.broadcast, lock=True)
            if latest is None:
                raise not_found(name)
            latest.require_draft()
            if edited.resend_of:
                latest.require_channel(edited.channel)
            self.require_group(conn, edited)
            return repo.save_draft(conn, edited)

        return await self._ctx.db.write(tx)

    async def delete(self, caller: Caller, name: str) -> None:
        n = self.name_of(caller, name)

        def tx(conn: Connection) -> None:
            found = repo.get(conn, n.merchant, n.broadcast, lock=True)
            if found is None:
                raise not_found(name)
            found.require_draft()
            repo.delete_draft(conn, n.merchant, n.broadcast)
            test_send_repo.delete_for(conn, n.broadcast)

        await self._ctx.db.write(tx)

    async def copy(
        self, caller: Caller, name: str, request_id: str, unsent_only: bool = False
    ) -> Broadcast:
        source = await self.get(caller, name)
        request_hash = request_fingerprint(COPY, name, unsent_only)
        if request_id:  # a retried copy returns the first, whatever the source's state now
            earlier = await recall(self._ctx.db, source.merchant, COPY, request_id, request_hash)
            if earlier is not None:
                return await self.get(caller, earlier)
        if unsent_only and source.state in (BroadcastState.DRAFT, BroadcastState.SENDING):
            raise FailedPrecondition(
                "Only the unreached recipients of a finished broadcast can be resent; this one "
                f"is {source.state.name.lower()}.",
                reason=Reason.BROADCAST_NOT_FINISHED,
                state=source.state.name,
            )
        draft = DraftInput(
            display_name=copy_name(source.display_name),
            channel=str(ChannelName(source.merchant, source.channel)),
            window=source.audience.window,
            customer_groups=_group_names(source.merchant, source.audience),
            messages=source.messages,
            notification_disabled=source.notification_disabled,
        )
        return await self.create(
            caller,
            str(MerchantName(source.merchant)),
            draft,
            request_id,
            copied_from=source.id,
            resend_of=source.id if unsent_only else "",
            method=COPY,
            request_hash=request_hash,
        )

    async def estimate(
        self,
        caller: Caller,
        parent: str,
        name: str,
        channel: str,
        window: InteractionWindow | None,
        groups: tuple[str, ...],
        inline: bool,
        limit: RecipientLimit | None = None,
    ) -> Estimate:
        """`limit`: a recipient limit to estimate with, as Send would apply it."""
        v = Violations()
        merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
        if limit is not None:
            rules.check_recipient_limit(v, limit.max_recipients, "recipient_limit")
        m = merchant.merchant if merchant else None
        if name:
            if inline:
                v.add("audience", "give either a draft's name or channel and audience, not both")
            b_name = collect(v, lambda: BroadcastName.parse(name, "name"))
            if b_name is not None and m is not None and b_name.merchant != m:
                v.add("name", "must be a broadcast of the parent merchant")
            v.raise_if_any()
            assert m is not None
            caller.require(m)
            draft = await self.get(caller, name)
            target = ChannelName(m, draft.channel)
            audience = draft.audience
            resend_of = draft.resend_of
        else:
            target_or_none = self._check_channel(v, m, channel, "channel")
            audience_or_none = self._check_audience(v, m, window, groups, "audience")
            v.raise_if_any()
            assert m is not None and target_or_none is not None and audience_or_none is not None
            caller.require(m)
            target, audience = target_or_none, audience_or_none
            resend_of = ""
        return await self.estimate_for(target, audience, resend_of, recent_quota=True, limit=limit)

    async def check_messages(self, caller: Caller, name: str) -> CheckResult:
        """The channel's own check of a draft's messages, asked now (for its estimate)."""
        draft = await self.get(caller, name)
        _, instance = await self.live(ChannelName(draft.merchant, draft.channel))
        check, _ = await channel_check(instance, draft.messages)
        return check

    async def estimate_for(
        self,
        channel: ChannelName,
        audience: Audience,
        resend_of: str = "",
        *,
        recent_quota: bool = False,
        limit: RecipientLimit | None = None,
        quotas: QuotaCache | None = None,
    ) -> Estimate:
        """The estimate of an audience, or of a resend's (`resend_of`: the source's id).
        `recent_quota`: a quota read in the last few seconds will do (the estimate shown while
        editing); `quotas`: the quota comes from there (scheduled broadcasts firing together);
        otherwise (Send) the channel is asked now."""
        account, instance = await self.live(channel)
        now = self._ctx.now()
        if resend_of:
            counting = self._ctx.db.read(
                snapshot.count_resend, channel.merchant, channel.channel, resend_of
            )
        else:
            await self.group_name(channel.merchant, audience)
            # A single statement over a bounded range (store/audience.py): a point read.
            counting = self._ctx.db.read_point(
                audience_repo.count,
                channel.merchant,
                channel.channel,
                window_start(now, audience.window),
                audience.customer_group,
            )
        cache = quotas or (self._quotas if recent_quota else None)
        followers = self._ctx.db.read_point(upkeep_repo.followers_state, channel.channel)
        counts, quota, (read, listable) = await asyncio.gather(
            counting, self.quota(channel, instance, cache), followers
        )
        verdict = instance.check_eligibility(audience, account_info(account))
        return Estimate(
            matched=counts.matched,
            opted_out=counts.opted_out,
            unreachable=counts.unreachable,
            quota_limited=quota.limited,
            quota_remaining=quota.remaining,
            eligible=verdict.eligible,
            ineligible_reason="" if verdict.eligible else verdict.reason,
            ineligible_message="" if verdict.eligible else verdict.message,
            estimate_time=now,
            limit=None if limit is None else limit.cap(quota.remaining),
            followers_complete=followers_complete(
                listable, read, now, self._ctx.followers_stale_after
            ),
            followers_sync_time=read,
        )


def window_start(now: datetime, window: InteractionWindow) -> datetime | None:
    """The earliest last interaction the window admits; None for all contacts."""
    return None if window.value is None else now - window.value


def _group_names(merchant: str, audience: Audience) -> tuple[str, ...]:
    if audience.customer_group is None:
        return ()
    return (str(CustomerGroupName(merchant, audience.customer_group)),)
