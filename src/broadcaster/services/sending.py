"""Sending a draft, cancelling it, and what became of each recipient.

SendBroadcast checks everything that can be checked before anything is fixed (channel, messages,
eligibility, quota), then in one transaction locks the draft, snapshots the recipients into
deliveries and batches, and marks it SENDING; the dispatcher (broadcaster.dispatch) takes it
from there, woken at once on every replica. A repeated request id returns the first result; of
concurrent Sends of one draft, the row lock lets exactly one through.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from broadcaster.channels import Channel
from broadcaster.domain import rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.broadcasts import Broadcast, Estimate, RecipientLimit
from broadcaster.domain.deliveries import Delivery, DeliveryOutcome
from broadcaster.domain.errors import (
    FailedPrecondition,
    PreconditionViolation,
    QuotaViolation,
    Violations,
    collect,
)
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.names import BroadcastName, ChannelName
from broadcaster.domain.paging import fingerprint
from broadcaster.domain.reasons import Reason
from broadcaster.services.broadcasts import Broadcasts, not_found, window_start
from broadcaster.services.context import ServiceContext
from broadcaster.services.idempotent import earlier_result, request_fingerprint
from broadcaster.store import broadcasts as repo
from broadcaster.store import deliveries as delivery_repo
from broadcaster.store import dispatch, idempotency, notifications, snapshot

SEND = "SendBroadcast"
DEFAULT_PAGE, MAX_PAGE = 100, 1000


def quota_exceeded(recipients: int, remaining: int, channel: str) -> FailedPrecondition:
    text = (
        f"{recipients} recipients exceed the {remaining} messages left in the channel's "
        "monthly quota: narrow the audience, or wait for the quota to renew."
    )
    return FailedPrecondition(
        text,
        reason=Reason.QUOTA_EXCEEDED,
        quota=[QuotaViolation(channel, text)],
        recipients=str(recipients),
        quota_remaining=str(remaining),
    )


def require_valid_messages(instance: Channel, draft: Broadcast) -> None:
    """The draft's messages meet the channel's rules now (they may have changed since it was
    saved): checked before anything is sent, by Send and by a test send."""
    problems = instance.validate_messages(draft.messages)
    if problems:
        raise FailedPrecondition(
            "The draft's messages no longer meet the channel's rules: edit them first.",
            reason=Reason.BROADCAST_MESSAGES_INVALID,
            violations=[
                PreconditionViolation("MESSAGES", p.field, p.description) for p in problems
            ],
        )


class Sending:
    def __init__(
        self, ctx: ServiceContext, broadcasts: Broadcasts, wake: Callable[[], None]
    ) -> None:
        """`wake` tells this process's dispatcher that a broadcast is ready to go."""
        self._ctx = ctx
        self._broadcasts = broadcasts
        self._wake = wake

    async def _checked(
        self, draft: Broadcast, limit: RecipientLimit | None
    ) -> tuple[Estimate, int]:
        """The draft's estimate (with `limit` resolved against the quota) and the channel's
        batch size, once every precondition that needs the channel holds."""
        draft.require_draft()
        channel = ChannelName(draft.merchant, draft.channel)
        account, instance = await self._broadcasts.live(channel)
        require_valid_messages(instance, draft)
        if not draft.resend_of:
            self._broadcasts.require_eligible(instance, account, draft.audience)
        estimate = await self._broadcasts.estimate_for(
            channel, draft.audience, draft.resend_of, limit=limit
        )
        remaining = estimate.quota_remaining
        # A limit of "the remaining quota" with none left would send nothing: refused alike.
        if remaining is not None and (
            estimate.exceeds_quota or (remaining == 0 and estimate.expected_recipients > 0)
        ):
            raise quota_exceeded(estimate.expected_recipients, remaining, str(channel))
        batch_size = type(instance).capabilities.max_recipients_per_request
        return estimate, batch_size

    async def send(
        self, caller: Caller, name: str, request_id: str, limit: RecipientLimit | None = None
    ) -> Broadcast:
        """`limit`: the recipient limit; None sends to every eligible recipient."""
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(name, "name"))
        rules.check_request_id(v, request_id)
        if limit is not None:
            rules.check_recipient_limit(v, limit.max_recipients, "recipient_limit")
        v.raise_if_any()
        assert n is not None
        draft = await self._broadcasts.get(caller, name)  # refuses another merchant's
        # (A Send without a limit keeps the fingerprint it always had.)
        request_hash = (
            request_fingerprint(SEND, name)
            if limit is None
            else request_fingerprint(SEND, name, limit)
        )
        if request_id:
            earlier = await self._ctx.db.read(idempotency.recall, n.merchant, SEND, request_id)
            if earlier is not None:  # this request was sent before (perhaps a moment ago)
                earlier_result(earlier, SEND, request_hash, target=name)
                # Read again: `draft` may have been read before that Send committed.
                return await self._broadcasts.get(caller, name)
        estimate, batch_size = await self._checked(draft, limit)
        now = self._ctx.now()

        def tx(conn: Connection) -> Broadcast:
            latest = repo.get(conn, n.merchant, n.broadcast, lock=True)
            if latest is None:
                raise not_found(name)
            if request_id:  # a concurrent Send with this request id may have won the lock
                earlier = idempotency.recall(conn, n.merchant, SEND, request_id)
                if earlier is not None:
                    earlier_result(earlier, SEND, request_hash, target=name)
                    return latest
            latest.require_draft()
            # The group is read in this transaction, and kept from deletion until it commits: a
            # group deleted since the estimate is NOT_FOUND here, never a send to nobody.
            self._broadcasts.require_group(conn, latest)
            fixed = snapshot.take(
                conn,
                merchant=latest.merchant,
                channel=latest.channel,
                broadcast=latest.id,
                since=window_start(now, latest.audience.window),
                group=latest.audience.customer_group,
                batch_size=batch_size,
                now=now,
                resend_of=latest.resend_of or None,
                cap=estimate.limit,
            )
            remaining = estimate.quota_remaining
            if remaining is not None and fixed.recipients > remaining:
                channel = ChannelName(latest.merchant, latest.channel)
                raise quota_exceeded(fixed.recipients, remaining, str(channel))
            sending = repo.start_sending(
                conn,
                latest,
                total=fixed.recipients,
                excluded=fixed.opted_out + fixed.unreachable,
                left_out_by_limit=fixed.left_out_by_limit,
                limit=limit,
                batches=fixed.batches,
                estimate=estimate,
                now=now,
            )
            if request_id:
                idempotency.remember(conn, n.merchant, SEND, request_id, name, request_hash, now)
            # Every replica's dispatcher hears of it when this commits (PostgreSQL); this
            # process's is woken directly.
            notifications.notify(conn, notifications.DISPATCH_CHANNEL, latest.channel)
            return sending

        sent = await self._ctx.db.write(tx)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        self._wake()
        return sent

    async def cancel(self, caller: Caller, name: str) -> Broadcast:
        n = self._broadcasts.name_of(caller, name)

        def tx(conn: Connection) -> Broadcast:
            found = repo.get(conn, n.merchant, n.broadcast, lock=True)
            if found is None:
                raise not_found(name)
            found.require_sending()
            dispatch.stop(
                conn,
                found.id,
                Transition.CANCEL,
                reason="",
                outcome=DeliveryOutcome.NOT_SENT_CANCELLED,
                now=self._ctx.now(),
            )
            cancelled = repo.get(conn, n.merchant, n.broadcast)
            assert cancelled is not None
            return cancelled

        cancelled = await self._ctx.db.write(tx)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        return cancelled

    async def deliveries(
        self,
        caller: Caller,
        parent: str,
        page_size: int,
        page_token: str,
        outcome: DeliveryOutcome | None,
    ) -> tuple[Broadcast, list[Delivery], str]:
        """A page of the broadcast's deliveries in recipient order; `outcome` filters."""
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(parent, "parent"))
        key = fingerprint(parent, None if outcome is None else int(outcome))
        page = collect(
            v,
            lambda: self._ctx.pages.request(
                page_size, page_token, key, default=DEFAULT_PAGE, maximum=MAX_PAGE
            ),
        )
        v.raise_if_any()
        assert n is not None and page is not None
        broadcast = await self._broadcasts.get(caller, parent)
        found = await self._ctx.db.read_point(
            delivery_repo.page,
            broadcast.id,
            outcome,
            page.after_number(),
            page.size + 1,
        )
        token = self._ctx.pages.next([str(d.seq) for d in found], page, key)
        return broadcast, found[: page.size], token
