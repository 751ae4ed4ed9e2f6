"""Sending a draft, scheduling it, cancelling it, and what became of each recipient.

SendBroadcast checks everything that can be checked before anything is fixed (channel, messages,
eligibility, quota), then in one transaction locks the draft, snapshots the recipients into
deliveries and batches, and marks it SENDING; the dispatcher (broadcaster.dispatch) takes it
from there, woken at once on every replica. A repeated request id returns the first result; of
concurrent Sends of one draft, the row lock lets exactly one through.

ScheduleBroadcast checks the same preconditions and marks the draft SCHEDULED with its time;
at that time the firing loop (broadcaster.dispatch.firing) calls `fire`, which checks them again
and takes the same path as Send (the FIRE transition instead of SEND); a precondition no longer
met fails the broadcast with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from broadcaster.channels import Channel, Quota
from broadcaster.domain import lifecycle, rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.broadcasts import Broadcast, Estimate, RecipientLimit
from broadcaster.domain.deliveries import Delivery, DeliveryOutcome
from broadcaster.domain.errors import (
    FailedPrecondition,
    NotFound,
    PreconditionViolation,
    QuotaViolation,
    Unavailable,
    Violations,
    collect,
)
from broadcaster.domain.lifecycle import BroadcastState, Transition, allows
from broadcaster.domain.names import BroadcastName, ChannelName
from broadcaster.domain.paging import fingerprint
from broadcaster.domain.reasons import Reason
from broadcaster.domain.scheduling import ScheduleWindow, check_schedule_time
from broadcaster.services.broadcasts import Broadcasts, not_found, window_start
from broadcaster.services.channel_hub import NotOpenableHere
from broadcaster.services.context import ServiceContext
from broadcaster.services.idempotent import earlier_result, recall, request_fingerprint
from broadcaster.services.quotas import QuotaCache
from broadcaster.store import broadcasts as repo
from broadcaster.store import deliveries as delivery_repo
from broadcaster.store import dispatch, idempotency, notifications, schedules, snapshot
from broadcaster.store import groups as group_repo
from broadcaster.tracing import current_traceparent

log = logging.getLogger(__name__)

SEND, SCHEDULE, UNSCHEDULE = "SendBroadcast", "ScheduleBroadcast", "UnscheduleBroadcast"
# Scheduled broadcasts firing together share their channel's quota read for this long: 1,000
# due at one second ask the channel once, not 1,000 times (each is still checked against it).
FIRE_QUOTA_SECONDS = 1.0
# How long past its time a scheduled broadcast whose channel cannot be reached is tried again
# (each try a firing lease apart) before it fails with CHANNEL_UNAVAILABLE.
FIRE_RETRY_FOR = timedelta(minutes=15)
# Recipients of Sends whose snapshots a reader prepared and that wait to be written, at most:
# each holds its batches' arrays in memory, about 7 MB per 100,000 recipients. A larger Send
# is numbered in its transaction instead: preparing 1,000,000 at once (the arrays beside the
# reader's numbering table) took the replica's peak RSS from about 200 to 313 MB.
PREPARED_RECIPIENTS = 2_000_000
PREPARED_PER_SEND = 250_000
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


@dataclass(frozen=True, slots=True)
class _Due:
    """A due scheduled broadcast, checked as far as its channel can say: to start, with the
    channel's quota and batch size, or to fail (`failure`: the reason)."""

    broadcast: Broadcast
    quota: Quota | None = None
    batch_size: int = 0
    failure: str = ""

    @property
    def remaining(self) -> int | None:
        """Messages left in the channel's quota; None without a quota (or a check)."""
        return None if self.quota is None else self.quota.remaining


def _locked(
    conn: Connection, n: BroadcastName, method: str, request_id: str, request_hash: str
) -> tuple[Broadcast, bool]:
    """The broadcast, locked for the rest of the transaction, and whether the call with
    `request_id` was made already (a concurrent one may have won the lock): its result then
    stands, and there is nothing to do. NOT_FOUND when the broadcast is gone."""
    latest = repo.get(conn, n.merchant, n.broadcast, lock=True)
    if latest is None:
        raise not_found(str(n))
    if request_id:
        earlier = idempotency.recall(conn, n.merchant, method, request_id)
        if earlier is not None:
            earlier_result(earlier, method, request_hash, target=str(n))
            return latest, True
    return latest, False


class Sending:
    def __init__(
        self,
        ctx: ServiceContext,
        broadcasts: Broadcasts,
        wake: Callable[[str], None],
        *,
        scheduled: Callable[[], None] = lambda: None,
        cancelled: Callable[[str, str], None] = lambda _channel, _broadcast: None,
        window: ScheduleWindow | None = None,
    ) -> None:
        """`wake` tells this process's dispatcher that a broadcast of the channel is ready to go,
        and `cancelled` (channel, broadcast) that one sending was cancelled; `scheduled` tells
        its firing loop that a broadcast was scheduled. `window`: the times a broadcast may be
        scheduled for."""
        self._ctx = ctx
        self._broadcasts = broadcasts
        self._wake = wake
        self._cancelled = cancelled
        self._scheduled = scheduled
        self.window = window or ScheduleWindow()
        self._fire_quotas = QuotaCache(ttl=FIRE_QUOTA_SECONDS)
        self._prepared_recipients = 0  # held by Sends now (`_prepared`)

    async def _checked(
        self,
        draft: Broadcast,
        limit: RecipientLimit | None = None,
        quotas: QuotaCache | None = None,
    ) -> tuple[Estimate, int]:
        """The draft's (or the due scheduled broadcast's) estimate, with `limit` resolved against
        the quota, and the channel's batch size, once every precondition that needs the channel
        holds."""
        if not allows(Transition.FIRE, draft.state):
            draft.require_draft()
        channel = ChannelName(draft.merchant, draft.channel)
        account, instance = await self._broadcasts.live(channel)
        require_valid_messages(instance, draft)
        if not draft.resend_of:
            self._broadcasts.require_eligible(instance, account, draft.audience)
        estimate = await self._broadcasts.estimate_for(
            channel, draft.audience, draft.resend_of, limit=limit, quotas=quotas
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
        if await recall(self._ctx.db, n.merchant, SEND, request_id, request_hash, name):
            # Sent before (perhaps a moment ago). Read again: `draft` may have been read before
            # that Send committed.
            return await self._broadcasts.get(caller, name)
        estimate, batch_size = await self._checked(draft, limit)
        now = self._ctx.now()
        trace_parent = current_traceparent()  # its batches continue this call's trace

        def tx(conn: Connection, prepared: snapshot.Prepared | None) -> Broadcast:
            latest, done = _locked(conn, n, SEND, request_id, request_hash)
            if done:
                return latest
            latest.require_draft()
            if trace_parent is not None:
                repo.set_trace_parent(conn, latest.id, trace_parent)
            sending = self._start(
                conn, latest, estimate, batch_size, now, limit=limit, prepared=prepared
            )
            if request_id:
                idempotency.remember(conn, n.merchant, SEND, request_id, name, request_hash, now)
            return sending

        async with self._prepared(draft, estimate, batch_size, now) as prepared:
            # Prepared, its transaction is short (a few ms): it goes ahead of the writes of
            # the channels already sending, instead of waiting behind them while its channel
            # stays idle (32 Sends at once had waited 0.47 s at the median, 0.75 s at most).
            write = self._ctx.db.write if prepared is None else self._ctx.db.write_soon
            sent = await write(tx, prepared)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        self._wake(sent.channel)
        return sent

    @contextlib.asynccontextmanager
    async def _prepared(
        self, draft: Broadcast, estimate: Estimate, batch_size: int, now: datetime
    ) -> AsyncIterator[snapshot.Prepared | None]:
        """The draft's recipients numbered and batched by a reader ahead of the Send's
        transaction, where the database prepares them (store.snapshot `prepare`); held until the
        block ends. None (numbered in that transaction) for a recipient limit or a resend, for a
        Send of more than PREPARED_PER_SEND, and when Sends already hold PREPARED_RECIPIENTS."""
        expected = estimate.expected_recipients
        if (
            not snapshot.prepares(self._ctx.db.dialect)
            or estimate.limit is not None
            or draft.resend_of
            or expected > PREPARED_PER_SEND
            or self._prepared_recipients + expected > PREPARED_RECIPIENTS
        ):
            yield None
            return
        self._prepared_recipients += expected
        try:
            yield await self._ctx.db.read(
                snapshot.prepare,
                merchant=draft.merchant,
                channel=draft.channel,
                since=window_start(now, draft.audience.window),
                group=draft.audience.customer_group,
                batch_size=batch_size,
            )
        finally:
            self._prepared_recipients -= expected

    def _start(
        self,
        conn: Connection,
        latest: Broadcast,
        estimate: Estimate,
        batch_size: int,
        now: datetime,
        *,
        limit: RecipientLimit | None = None,
        scheduled: bool = False,
        prepared: snapshot.Prepared | None = None,
    ) -> Broadcast:
        """In the transaction that holds `latest` locked: fix its recipients (up to `limit`, as
        `estimate` resolved it) and start it (SEND, or FIRE when `scheduled`). `prepared`: its
        recipients as a reader numbered them, if they still fit its audience."""
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
            prepared=prepared,
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
            scheduled=scheduled,
        )
        # Every replica's dispatcher hears of it when this commits (PostgreSQL); this
        # process's is woken directly.
        notifications.notify(conn, notifications.DISPATCH_CHANNEL, latest.channel)
        return sending

    async def schedule(
        self,
        caller: Caller,
        name: str,
        when: datetime | None,
        request_id: str,
        limit: RecipientLimit | None = None,
    ) -> Broadcast:
        """Check every precondition of Send now, and mark the draft SCHEDULED for `when`, to be
        sent up to `limit` (None: to every eligible recipient)."""
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(name, "name"))
        rules.check_request_id(v, request_id)
        if limit is not None:
            rules.check_recipient_limit(v, limit.max_recipients, "recipient_limit")
        v.raise_if_any()
        assert n is not None
        draft = await self._broadcasts.get(caller, name)  # refuses another merchant's
        request_hash = (
            request_fingerprint(SCHEDULE, name, when)
            if limit is None
            else request_fingerprint(SCHEDULE, name, when, limit)
        )
        # A retry returns the first result, even once its time is near or past.
        if await recall(self._ctx.db, n.merchant, SCHEDULE, request_id, request_hash, name):
            return await self._broadcasts.get(caller, name)
        check_schedule_time(v, when, self._ctx.now(), self.window)
        v.raise_if_any()
        assert when is not None
        await self._checked(draft, limit)
        trace_parent = current_traceparent()  # its batches, sent at its time, continue it

        def tx(conn: Connection) -> Broadcast:
            latest, done = _locked(conn, n, SCHEDULE, request_id, request_hash)
            if done:
                return latest
            latest.require_draft()
            if trace_parent is not None:
                repo.set_trace_parent(conn, latest.id, trace_parent)
            self._broadcasts.require_group(conn, latest)
            now = self._ctx.now()
            scheduled = repo.schedule(conn, latest, when, now, limit)
            assert scheduled is not None  # locked, and a draft
            if request_id:
                idempotency.remember(
                    conn, n.merchant, SCHEDULE, request_id, name, request_hash, now
                )
            notifications.notify(conn, notifications.SCHEDULE_CHANNEL)
            return scheduled

        scheduled = await self._ctx.db.write(tx)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        self._scheduled()
        return scheduled

    async def unschedule(self, caller: Caller, name: str, request_id: str) -> Broadcast:
        """The scheduled broadcast becomes a draft again, to edit (and schedule again)."""
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(name, "name"))
        rules.check_request_id(v, request_id)
        v.raise_if_any()
        assert n is not None
        await self._broadcasts.get(caller, name)  # refuses another merchant's
        request_hash = request_fingerprint(UNSCHEDULE, name)

        def tx(conn: Connection) -> Broadcast:
            latest, done = _locked(conn, n, UNSCHEDULE, request_id, request_hash)
            if done:
                return latest
            latest.require_scheduled()
            now = self._ctx.now()
            draft = repo.unschedule(conn, latest, now)
            assert draft is not None  # locked, and scheduled
            if request_id:
                idempotency.remember(
                    conn, n.merchant, UNSCHEDULE, request_id, name, request_hash, now
                )
            return draft

        draft = await self._ctx.db.write(tx)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        return draft

    async def fire(self, merchant: str, broadcast_id: str) -> Broadcast | None:
        """Send the scheduled broadcast whose time has come (see `fire_many`); None if it is
        no longer scheduled, or its channel could not be reached (tried again later)."""
        (fired,) = await self.fire_many([(merchant, broadcast_id)])
        return fired

    async def fire_many(
        self, due: Sequence[tuple[str, str]], *, per_commit: int = 250
    ) -> list[Broadcast | None]:
        """Send the scheduled broadcasts (merchant, id) whose time has come. Send's
        preconditions are checked again, and one that fails ends the broadcast FAILED with its
        reason; the others start as Send starts a draft, `per_commit` to a transaction. Returns
        each as it ends up; None for one no longer scheduled (fired already, unscheduled,
        cancelled, deleted, or changed since it was claimed) or whose channel could not be
        reached (its claim lapses, and it is tried again).

        Many are due at once (an evening promotion hour), so the work is done per channel and
        per transaction, not per broadcast: the broadcasts are read in one statement, each
        channel is opened and its quota read once for all its broadcasts, and a transaction
        fixes the recipients of all of its broadcasts and starts them in a few statements
        (store.snapshot `take_many`, store.broadcasts `start_many`).

        Sends nothing twice: the change of state out of SCHEDULED happens once, under the
        broadcast's row lock, whoever calls this and however often."""
        found = await self._ctx.db.read(repo.get_many, list(due))
        by_channel: dict[tuple[str, str], list[Broadcast]] = {}
        for b in found:
            if allows(Transition.FIRE, b.state):
                by_channel.setdefault((b.merchant, b.channel), []).append(b)
        room = asyncio.Semaphore(16)

        async def check(channel: ChannelName, some: list[Broadcast]) -> list[_Due]:
            async with room:
                return await self._check_due(channel, some)

        checked = await asyncio.gather(
            *(check(ChannelName(m, ch), some) for (m, ch), some in by_channel.items())
        )
        ready = sorted((d for ds in checked for d in ds), key=lambda d: d.broadcast.id)
        ended: dict[str, Broadcast] = {}
        for at in range(0, len(ready), per_commit):
            ended.update(await self._ctx.db.write(self._fire_tx, ready[at : at + per_commit]))
        for merchant in {b.merchant for b in ended.values()}:
            self._ctx.events_recorded(merchant)  # their lifecycle events
        for channel in {b.channel for b in ended.values() if b.state is not BroadcastState.FAILED}:
            self._wake(channel)
        return [ended.get(b) for _, b in due]

    async def _check_due(self, channel: ChannelName, due: list[Broadcast]) -> list[_Due]:
        """The due broadcasts of one channel, checked against it: the channel opened and its
        quota read once for all of them (shared a second with other firings), then each one's
        messages and audience. A channel that cannot be reached leaves them to be tried again
        (none returned), until they are too late."""
        try:
            account, instance = await self._broadcasts.live(channel)
            quota = await self._broadcasts.quota(channel, instance, self._fire_quotas)
        except NotOpenableHere as e:
            # Another replica may open it (a plugin or a key this one lacks): give up the claim
            # at once, so that one fires them now, and leave the channel to it for a while.
            log.warning("scheduled broadcasts of %s: %s; leaving them to others", channel, e)
            await self._ctx.db.write(_release_claims, [b.id for b in due])
            return []
        except Unavailable as e:
            now = self._ctx.now()
            late = [
                b for b in due if b.schedule_time is None or now - b.schedule_time >= FIRE_RETRY_FOR
            ]
            if len(late) < len(due):
                log.warning("scheduled broadcasts of %s: %s; trying again", channel, e)
            return [_Due(b, failure=e.reason) for b in late]
        except (FailedPrecondition, NotFound) as e:
            return [_Due(b, failure=e.reason) for b in due]
        batch_size = type(instance).capabilities.max_recipients_per_request
        checked: list[_Due] = []
        for b in due:
            try:
                require_valid_messages(instance, b)
                if not b.resend_of:
                    self._broadcasts.require_eligible(instance, account, b.audience)
            except FailedPrecondition as e:
                checked.append(_Due(b, failure=e.reason))
                continue
            checked.append(_Due(b, quota, batch_size))
        return checked

    def _fire_tx(self, conn: Connection, chunk: list[_Due]) -> dict[str, Broadcast]:
        """Start (or fail) the checked due broadcasts together, in this transaction."""
        at = self._ctx.now()  # their send_time: when their sends are accepted
        keys = [(d.broadcast.merchant, d.broadcast.id) for d in chunk]
        latest = {b.id: b for b in repo.get_many(conn, keys, lock=True)}

        def unchanged(d: _Due) -> bool:  # still scheduled, as it was when checked
            now = latest.get(d.broadcast.id)
            return (
                now is not None
                and allows(Transition.FIRE, now.state)
                and now.update_time == d.broadcast.update_time
            )

        chunk = [d for d in chunk if unchanged(d)]
        failures = {d.broadcast.id: d.failure for d in chunk if d.failure}
        ready = [d for d in chunk if not d.failure]
        # The groups are read in this transaction, and kept from deletion until it commits: a
        # group deleted since the broadcast was scheduled fails it, never a send to nobody.
        groups = {(d.broadcast.merchant, d.broadcast.audience.customer_group) for d in ready}
        present = group_repo.existing(conn, {(m, g) for m, g in groups if g is not None})
        targets: list[tuple[_Due, snapshot.Target]] = []
        for d in ready:
            b, group = d.broadcast, d.broadcast.audience.customer_group
            if group is not None and (b.merchant, group) not in present:
                failures[b.id] = Reason.CUSTOMER_GROUP_NOT_FOUND
                continue
            target = snapshot.Target(
                broadcast=b.id,
                merchant=b.merchant,
                channel=b.channel,
                since=None if b.resend_of else window_start(at, b.audience.window),
                group=None if b.resend_of else group,
                batch_size=d.batch_size,
                resend_of=b.resend_of or None,
                cap=None if b.recipient_limit is None else b.recipient_limit.cap(d.remaining),
            )
            targets.append((d, target))
        counted = snapshot.count_many(conn, [t for _, t in targets])
        admitted: list[tuple[_Due, snapshot.Target]] = []
        for d, t in targets:
            c, remaining = counted[t.broadcast], d.remaining
            expected = c.matched - c.opted_out - c.unreachable
            recipients = expected if t.cap is None else min(expected, t.cap)
            # As Send: more than the quota left, or none left (a limit of "the remaining
            # quota" would send nothing), is refused.
            if remaining is not None and (
                recipients > remaining or (remaining == 0 and expected > 0)
            ):
                failures[t.broadcast] = Reason.QUOTA_EXCEEDED
            else:
                admitted.append((d, t))
        fixed = snapshot.take_many(conn, [t for _, t in admitted], counted, at)
        starts = []
        for d, t in admitted:
            f, c = fixed[t.broadcast], counted[t.broadcast]
            estimate = Estimate(
                matched=c.matched,
                opted_out=c.opted_out,
                unreachable=c.unreachable,
                quota_limited=d.quota is not None and d.quota.limited,
                quota_remaining=d.remaining,
                eligible=True,
                ineligible_reason="",
                ineligible_message="",
                estimate_time=at,
                limit=t.cap,
            )
            starts.append(
                repo.Start(
                    t.broadcast,
                    total=f.recipients,
                    excluded=f.opted_out + f.unreachable,
                    batches=f.batches,
                    estimate=estimate,
                    limit=d.broadcast.recipient_limit,
                    left_out_by_limit=f.left_out_by_limit,
                )
            )
        repo.start_many(conn, starts, at, scheduled=True)
        # Every replica's dispatcher hears of them when this commits (PostgreSQL).
        for channel in sorted({t.channel for _, t in admitted}):
            notifications.notify(conn, notifications.DISPATCH_CHANNEL, channel)
        for broadcast, reason in sorted(failures.items()):
            stopped = dispatch.stop(
                conn,
                broadcast,
                Transition.FAIL,
                reason=reason,
                outcome=DeliveryOutcome.NOT_SENT_STOPPED,
                now=at,
                only=lifecycle.sources(Transition.FIRE),
            )
            if stopped:
                log.info("scheduled broadcast %s failed at its time: %s", broadcast, reason)
        ended = [k for k in keys if k[1] in failures or k[1] in fixed]
        return {b.id: b for b in repo.get_many(conn, ended)}

    async def cancel(self, caller: Caller, name: str) -> Broadcast:
        n = self._broadcasts.name_of(caller, name)

        def tx(conn: Connection) -> Broadcast:
            found = repo.get(conn, n.merchant, n.broadcast, lock=True)
            if found is None:
                raise not_found(name)
            found.require_sending()  # or scheduled: it then ends without sending anything
            dispatch.stop(
                conn,
                found.id,
                Transition.CANCEL,
                reason="",
                outcome=DeliveryOutcome.NOT_SENT_CANCELLED,
                now=self._ctx.now(),
            )
            # The other replicas' batches of it claimed and never sent do not go either.
            notifications.notify(
                conn,
                notifications.DISPATCH_CHANNEL,
                notifications.cancelled_payload(found.channel, found.id),
            )
            cancelled = repo.get(conn, n.merchant, n.broadcast)
            assert cancelled is not None
            return cancelled

        cancelled = await self._ctx.db.write(tx)
        self._ctx.events_recorded(n.merchant)  # its lifecycle event
        self._cancelled(cancelled.channel, cancelled.id)  # its batches claimed here stay unsent
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


def _release_claims(conn: Connection, broadcast_ids: list[str]) -> None:
    schedules.release(conn, broadcast_ids)
    notifications.notify(conn, notifications.SCHEDULE_CHANNEL)  # the other replicas look now
