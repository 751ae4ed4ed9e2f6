"""Steps 1 and 2 of the demo: a LINE Official Account with friends, connected in one call (the
follower sync starts by itself); a year of the friends' interactions, posted as signed webhook
events."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import TYPE_CHECKING, Any

from broadcaster_client.v1 import channel_service_pb2 as cpb

from broadcaster.tools.demo import platform
from broadcaster.tools.demo.shop import CALL_TIMEOUT, POLL_SECONDS, DemoFailed, Shop
from broadcaster.tools.progress import Progress

if TYPE_CHECKING:
    from broadcaster.tools.demo.platform import Account, WebhookResult

DAY_MS = 86_400_000
# Shares of the friends, chosen to give every audience in the estimate something to show.
INTERACTING = 0.4  # wrote or tapped something within the last year (through webhooks)
BLOCKED = 0.01  # blocked the account since (unfollow events): unreachable
WEBHOOK_BATCH = 1000  # events per webhook request: a year of history, replayed in bulk
WEBHOOK_CONCURRENCY = 8
REDELIVERIES = 3  # of a webhook request the service answered with a 5xx
ENGAGEMENT_ARRIVAL_HOURS = 0.1 / 3600  # opens arrive over a tenth of a second, not hours


def connect(shop: Shop, followers: int) -> tuple[Account, cpb.Channel]:
    emu = shop.stack.emulator
    account = shop.stack.call(
        emu.add_account,
        tier="verified",
        display_name="Demo Shop",
        followers=followers,
        quota=max(4 * followers, 1000),
    )
    # Its friends open (about 40 %) and click (about 7 %) what they are sent within moments,
    # rather than over the hours real people take: the story shows the figures at its end.
    engagement = platform.emulator().Engagement(arrival_hours=ENGAGEMENT_ARRIVAL_HOURS)
    shop.stack.call(emu.set_engagement, account, engagement)
    channel = shop.client.channels.CreateChannel(
        cpb.CreateChannelRequest(
            parent=shop.merchant,
            channel=cpb.Channel(
                type="line",
                credentials={
                    "channel_access_token": account.access_token,
                    "channel_secret": account.channel_secret,
                },
            ),
            request_id="demo-connect-line",
        ),
        timeout=CALL_TIMEOUT,
    )
    tier = cpb.Channel.Tier.Name(channel.tier).lower()
    shop.story.step(
        f"connected the LINE Official Account {channel.display_name!r} ({tier}): {channel.name}"
        " in one call; its follower sync started by itself"
    )
    return account, channel


def sync(shop: Shop, channel: cpb.Channel) -> int:
    """Follow the sync CreateChannel started (no SyncContacts call) until every follower is a
    contact."""
    channels = shop.client.channels
    progress = Progress(shop.story.out)
    while True:
        run = channels.GetChannel(
            cpb.GetChannelRequest(name=channel.name), timeout=CALL_TIMEOUT
        ).last_sync
        if run.state in (cpb.ContactSync.FAILED, cpb.ContactSync.SKIPPED):
            raise DemoFailed(f"contact sync {run.error_reason} {run.message}".strip())
        if run.followers_complete:
            break
        if run.contacts_synced:
            progress.update(run.contacts_synced, None, "followers listed")
        time.sleep(POLL_SECONDS)
    upkeep = channels.GetChannel(
        cpb.GetChannelRequest(name=channel.name), timeout=CALL_TIMEOUT
    ).follower_sync
    due = upkeep.next_sync_time.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")
    progress.finish(
        shop.story.stamp(
            f"synced {run.contacts_synced:,} followers into contacts "
            f"(their profiles keep arriving in the background; next re-sync due {due})"
        )
    )
    return int(run.contacts_synced)


def _spread_timestamps(rng: random.Random, now_ms: int, count: int) -> list[int]:
    """Interaction times over the last 365 days, denser towards today (as activity is)."""
    return [now_ms - int(365 * DAY_MS * rng.random() ** 2) - 1000 for _ in range(count)]


def interactions(shop: Shop, account: Account, channel: cpb.Channel, followers: list[str]) -> None:
    rng, stack = shop.rng, shop.stack
    emu = stack.emulator
    now_ms = int(time.time() * 1000)
    active = rng.sample(followers, int(len(followers) * INTERACTING))
    times = _spread_timestamps(rng, now_ms, len(active))
    blocked = set(rng.sample(followers, int(len(followers) * BLOCKED)))

    def build() -> list[dict[str, Any]]:
        factory = emu.events
        events: list[dict[str, Any]] = []
        for user, ts in zip(active, times, strict=True):
            if rng.random() < 0.7:
                events.append(factory.text_message(user, "Is this in stock?", timestamp_ms=ts))
            else:
                events.append(factory.postback(user, "action=coupon", timestamp_ms=ts))
        events.sort(key=lambda e: e["timestamp"])  # LINE delivers roughly in order
        for user in sorted(blocked):
            # Stamped now: after the sync that listed them as following.
            events.append(emu.unfollow(account, user))
        return events

    events = stack.call(build)
    url = f"http://127.0.0.1:{stack.http_port}{channel.webhook_path}"
    started = time.monotonic()
    progress = Progress(shop.story.out)
    posted = 0
    gate = asyncio.Semaphore(WEBHOOK_CONCURRENCY)

    async def deliver(batch: list[dict[str, Any]]) -> WebhookResult:
        """One request; redelivered (as LINE does) while the service answers 5xx."""
        async with gate:
            sender = emu.webhook_sender(account)  # on the loop: it uses the loop's session
            for attempt in range(REDELIVERIES + 1):
                result = await sender.post(url, batch)
                if result.status < 500 or attempt == REDELIVERIES:
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
                batch = [emu.events.redelivered(e) for e in batch]
            return result

    async def post(chunk: list[dict[str, Any]]) -> list[WebhookResult]:
        batches = [chunk[i : i + WEBHOOK_BATCH] for i in range(0, len(chunk), WEBHOOK_BATCH)]
        return list(await asyncio.gather(*(deliver(b) for b in batches)))

    # Posted in slices, a few requests overlapping, so that the progress bar moves.
    slice_size = WEBHOOK_BATCH * WEBHOOK_CONCURRENCY * 2
    for lo in range(0, len(events), slice_size):
        chunk = events[lo : lo + slice_size]
        refused = [r for r in stack.run(post(chunk)) if r.status != 200]
        if refused:
            r = refused[0]
            raise DemoFailed(f"the webhook endpoint answered {r.status}: {r.response_body}")
        posted += len(chunk)
        progress.update(posted, len(events), "webhook events")
    seconds = time.monotonic() - started
    progress.finish(
        shop.story.stamp(
            f"{len(active):,} friends wrote or tapped something over the last year and "
            f"{len(blocked):,} blocked the account: {len(events):,} signed webhook events "
            f"in {math.ceil(len(events) / WEBHOOK_BATCH):,} requests "
            f"({len(events) / max(seconds, 1e-6):,.0f} events/s)"
        )
    )
