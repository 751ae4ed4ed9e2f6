"""Webhook ingestion: authenticate with the channel, screen its events, then record them with
group commit.

Requests wait for their events to be committed (so a crash never loses an acknowledged event),
but concurrent requests share one transaction: a single writer takes everything queued and
writes it at once. If a shared transaction fails, each request is retried in a transaction of its
own, so one channel's request can never fail another's. Redelivered events (same event id) change
nothing.

Whatever a plugin returns is screened before it reaches a transaction (`screen`): ids must be
printable and no longer than the columns that hold them, timestamps aware of their time zone. An
event that fails is refused alone and counted (`broadcaster_webhook_events_refused_total`); a
timestamp later than the moment of receipt is taken as that moment, so a clock far ahead (or a
forged year 9999) never pins a contact's last interaction in the future.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection

from broadcaster import logs
from broadcaster.channels import (
    EventRefusal,
    InteractionEvent,
    InteractionKind,
    RefusedEvent,
    WebhookRejected,
)
from broadcaster.domain import rules
from broadcaster.domain.errors import NotFound
from broadcaster.domain.model import ChannelAccount, FollowerState
from broadcaster.domain.reasons import Reason
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import channel_contacts, upkeep, webhook_events
from broadcaster.store.channel_contacts import ContactNews

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 5000
MAX_EVENT_ID = 128  # webhook_events.event_id
# Event ids are remembered this long to recognise redeliveries, then forgotten (a redelivery
# older than this would be recorded again; contacts never move backwards, so it changes little).
DEDUPE_WINDOW = timedelta(days=7)
PRUNE_EVERY = 600.0  # seconds
PRUNE_BATCH = 5000  # rows per DELETE: short transactions, never a long lock
PRUNE_MOST = 100  # DELETEs per round; the rest waits for the next round
_STATE = {
    InteractionKind.FOLLOW: FollowerState.FOLLOWING,
    InteractionKind.UNFOLLOW: FollowerState.BLOCKED,
}


@dataclass
class _Pending:
    account: ChannelAccount
    events: Sequence[InteractionEvent]
    done: asyncio.Future[int]


class Receipt(NamedTuple):
    """What one webhook request came to: events recorded (redeliveries included) and refused."""

    recorded: int
    refused: int


def screen(
    parsed: Sequence[object], now: datetime
) -> tuple[list[InteractionEvent], list[RefusedEvent]]:
    """Split what a plugin parsed into events safe to record and refusals (the plugin's own and
    the core's). Timestamps later than `now` become `now`."""
    events: list[InteractionEvent] = []
    refused: list[RefusedEvent] = []
    for index, item in enumerate(parsed):
        if isinstance(item, RefusedEvent):
            refused.append(item)
        elif not isinstance(item, InteractionEvent) or not isinstance(item.kind, InteractionKind):
            refused.append(RefusedEvent(EventRefusal.MALFORMED, f"item {index} is not an event"))
        elif not (
            isinstance(item.event_id, str) and rules.is_printable_id(item.event_id, MAX_EVENT_ID)
        ):
            refused.append(RefusedEvent(EventRefusal.INVALID_ID, f"item {index}: event id"))
        elif not (
            isinstance(item.external_id, str)
            and rules.is_printable_id(item.external_id, rules.MAX_EXTERNAL_ID)
        ):
            refused.append(RefusedEvent(EventRefusal.INVALID_ID, f"item {index}: contact id"))
        elif not isinstance(item.timestamp, datetime) or item.timestamp.utcoffset() is None:
            refused.append(RefusedEvent(EventRefusal.INVALID_TIMESTAMP, f"item {index}"))
        else:
            events.append(item if item.timestamp <= now else replace(item, timestamp=now))
    return events, refused


def summarize(events: Sequence[InteractionEvent]) -> list[ContactNews]:
    """Fold a channel's new events into one piece of news per contact."""
    by_contact: dict[str, list[InteractionEvent]] = defaultdict(list)
    for e in events:
        by_contact[e.external_id].append(e)
    news = []
    for external_id, items in by_contact.items():
        interactions = [e.timestamp for e in items if e.kind != InteractionKind.UNFOLLOW]
        changes = [e for e in items if e.kind in _STATE]
        latest = max(changes, key=lambda e: e.timestamp, default=None)
        news.append(
            ContactNews(
                external_id=external_id,
                last_interaction=max(interactions, default=None),
                follower_state=_STATE[latest.kind] if latest else FollowerState.UNKNOWN,
                state_time=latest.timestamp if latest else None,
                messaged=any(e.kind == InteractionKind.MESSAGE for e in items),
            )
        )
    return news


class WebhookIngest:
    def __init__(
        self, ctx: ServiceContext, hub: ChannelHub, *, prune_batch: int = PRUNE_BATCH
    ) -> None:
        self._ctx = ctx
        self._hub = hub
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._prune_batch = prune_batch

    async def prune(self) -> int:
        """Forget event ids older than the dedupe window, a bounded DELETE at a time; returns
        how many. Harmless when every replica runs it at once."""
        before = self._ctx.now() - DEDUPE_WINDOW
        total = 0
        for _ in range(PRUNE_MOST):
            n = await self._ctx.db.write(webhook_events.prune, before, self._prune_batch)
            total += n
            if n < self._prune_batch:
                break
        return total

    def prune_periodically(self, every: float = PRUNE_EVERY) -> None:
        async def loop() -> None:
            while True:
                try:
                    pruned = await self.prune()
                    if pruned:
                        log.info("forgot %d webhook event ids past the dedupe window", pruned)
                except Exception:
                    log.exception("could not prune webhook event ids")
                await asyncio.sleep(every)

        self._pruner = asyncio.create_task(loop(), name="webhook-event-pruner")

    async def receive(
        self, channel_type: str, channel_id: str, headers: Mapping[str, str], body: bytes
    ) -> Receipt:
        """Authenticate and record one webhook request; returns how many of its events were
        recorded and how many refused.

        Raises NotFound for an unknown channel, WebhookRejected for a bad signature."""
        found = await self._hub.get(channel_id)
        if found is None or found[0].type != channel_type:
            raise NotFound("channel", channel_id, reason=Reason.CHANNEL_NOT_FOUND)
        account, instance = found
        with logs.bound(merchant=account.merchant, channel=account.id):
            try:
                parsed = instance.parse_webhook(headers, body)
            except WebhookRejected:
                self._ctx.metrics.webhook_signature_failure(account.type)
                raise
            events, refused = screen(parsed, self._ctx.now())
            if refused:
                self._ctx.metrics.webhook_refused(account.type, refused)
                log.warning(
                    "refused %d webhook events: %s",
                    len(refused),
                    "; ".join(f"{r.refusal.value} {r.detail}".strip() for r in refused[:5]),
                )
            if not events:
                return Receipt(0, len(refused))  # a connectivity check, or nothing usable
            if self._writer is None or self._writer.done():
                # Its own empty context: the writer serves every channel, not this request's.
                self._writer = asyncio.create_task(
                    self._write_loop(), name="webhook-writer", context=contextvars.Context()
                )
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            await self._queue.put(_Pending(account, events, done))
            await done
            self._ctx.metrics.webhook_received(account.type, events)
            return Receipt(len(events), len(refused))

    def channel_types(self) -> list[str]:
        """The installed channel types (the only values metrics label webhooks with)."""
        return self._hub.registry.types()

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].events)
            while size < MAX_BATCH_EVENTS and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                size += len(batch[-1].events)
            await self._commit(batch, size)

    async def _commit(self, batch: list[_Pending], size: int) -> None:
        try:
            await self._ctx.db.write(self._record, batch, self._ctx.now())
        except Exception as e:  # the channel redelivers what we did not acknowledge
            if len(batch) > 1:
                # Which request failed the shared transaction is unknown: each alone, so the
                # others are recorded and only the failing one is answered with an error.
                for p in batch:
                    await self._commit([p], len(p.events))
                return
            log.exception("could not record %d webhook events", size)
            if not batch[0].done.done():
                batch[0].done.set_exception(e)
            return
        for p in batch:
            if not p.done.done():
                p.done.set_result(len(p.events))

    @staticmethod
    def _record(conn: Connection, batch: list[_Pending], now: datetime) -> None:
        by_channel: dict[str, tuple[ChannelAccount, list[InteractionEvent]]] = {}
        for p in batch:
            by_channel.setdefault(p.account.id, (p.account, []))[1].extend(p.events)
        for channel_id, (account, events) in by_channel.items():
            fresh = webhook_events.claim_new(conn, channel_id, [e.event_id for e in events], now)
            seen: set[str] = set()
            new_events = []
            for e in events:
                if e.event_id in fresh and e.event_id not in seen:
                    seen.add(e.event_id)
                    new_events.append(e)
            if new_events:
                channel_contacts.record_news(
                    conn, account.merchant, channel_id, summarize(new_events), now
                )
            upkeep.event_received(conn, channel_id, now)

    async def stop(self) -> None:
        for task in (self._writer, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
