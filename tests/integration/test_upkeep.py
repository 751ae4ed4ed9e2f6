"""Channel upkeep on SQLite and PostgreSQL: the first sync starts on connection, re-syncs come
due on a durable schedule and are claimed by one replica, never on top of a running sync; a
channel's health follows its inputs, with a lifecycle event when it turns unhealthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.deliveries import START, EventFilter, EventKind
from broadcaster.domain.health import Issue, WebhookState
from broadcaster.domain.model import ChannelAccount, SyncState
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.context import ServiceContext
from broadcaster.services.health import refresh_health
from broadcaster.services.upkeep import ChannelUpkeep, UpkeepSettings
from broadcaster.store import events, syncs
from broadcaster.store import upkeep as repo

HOUR = timedelta(hours=1)


class Rig:
    def __init__(self, ctx: ServiceContext, hub: ChannelHub, merchant: str) -> None:
        ctx.follower_sync_interval = HOUR
        self.ctx, self.merchant = ctx, merchant
        self.channels = Channels(ctx, hub)
        self.syncer = ContactSyncer(ctx, hub, self.channels)
        self.upkeep = ChannelUpkeep(ctx, self.syncer, hub)
        self.made: list[str] = []

    async def connect(self, **credentials: str) -> ChannelAccount:
        made = await self.channels.create(
            LOCAL,
            f"merchants/{self.merchant}",
            "fake",
            {"token": "t", "account": f"{self.merchant}-{len(self.made)}", **credentials},
            "",
        )
        self.made.append(made.id)
        await self.upkeep.connected(made)
        return await self.get(made.id)

    async def get(self, channel_id: str) -> ChannelAccount:
        return await self.channels.get(LOCAL, f"merchants/{self.merchant}/channels/{channel_id}")

    async def settle(self, channel_id: str) -> ChannelAccount:
        run = (await self.get(channel_id)).last_sync
        assert run is not None
        await self.syncer.wait(run.id)
        return await self.get(channel_id)

    async def close(self) -> None:
        await self.upkeep.stop()
        await self.syncer.stop()
        for channel_id in self.made:  # disconnected: never due for another test
            await self.channels.delete(LOCAL, f"merchants/{self.merchant}/channels/{channel_id}")


@pytest.fixture
async def rig(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> AsyncIterator[Rig]:
    made = Rig(ctx, hub, merchant)
    yield made
    await made.close()


async def test_connecting_starts_the_first_sync_and_schedules_the_next(rig: Rig) -> None:
    before = rig.ctx.now()
    account = await rig.connect(tier="verified", followers="250")
    assert account.last_sync is not None
    settled = await rig.settle(account.id)
    assert settled.last_sync is not None and settled.last_sync.state == SyncState.SUCCEEDED
    u = settled.upkeep
    assert u.followers_sync_time is not None and u.followers_sync_time >= before
    assert u.next_sync_time is not None
    assert before + HOUR <= u.next_sync_time <= rig.ctx.now() + HOUR
    assert u.issues == Issue(0)
    # What estimates read of it, in one statement: the list's time, and that it may be listed.
    state = await rig.ctx.db.read(repo.followers_state, account.id)
    assert state == (u.followers_sync_time, True)
    # A repeated CreateChannel (the same account returned) starts nothing more.
    await rig.upkeep.connected(settled)
    again = await rig.get(account.id)
    assert again.last_sync is not None and again.last_sync.id == settled.last_sync.id

    # An account that may not list its followers is skipped at once, and says so.
    standard = await rig.settle((await rig.connect(tier="standard")).id)
    assert standard.last_sync is not None and standard.last_sync.state == SyncState.SKIPPED
    assert standard.upkeep.followers_sync_time is None
    assert standard.upkeep.issues == Issue(0)  # not stale: there is no list to keep
    assert await rig.ctx.db.read(repo.followers_state, standard.id) == (None, False)
    # A channel never synced (or unknown): nothing read, nothing skipped.
    assert await rig.ctx.db.read(repo.followers_state, "nosuchchannel") == (None, True)


async def test_with_syncs_off_connecting_starts_none_and_nothing_turns_stale(rig: Rig) -> None:
    """BROADCASTER_FOLLOWER_SYNC_INTERVAL=off: no first sync, no re-sync scheduled, no upkeep
    loop; a list never read is not called stale (SyncContacts is the only way to read it)."""
    rig.ctx.follower_sync_interval = None
    account = await rig.connect(tier="verified", followers="50")
    assert account.last_sync is None and account.upkeep.next_sync_time is None
    rig.ctx.clock = lambda: account.create_time + timedelta(days=30)
    await refresh_health(rig.ctx, account.id)
    assert (await rig.get(account.id)).upkeep.issues == Issue(0)
    rig.upkeep.start()
    assert rig.upkeep._loop is None


async def test_a_due_resync_is_claimed_by_one_replica_and_moved_on(rig: Rig) -> None:
    account = await rig.settle((await rig.connect(tier="verified", followers="120")).id)
    assert account.last_sync is not None
    first_run = account.last_sync.id
    await rig.ctx.db.write(repo.schedule_sync, account.id, rig.ctx.now() - timedelta(seconds=1))
    now = rig.ctx.now()
    claims = await asyncio.gather(
        *(
            rig.ctx.db.write(repo.claim_due_syncs, now=now, lease_until=now + HOUR, limit=100)
            for _ in range(4)
        )
    )
    assert sum(account.id in c for c in claims) == 1  # one replica holds it
    # While claimed, no one else takes it; once its claim lapses, another does.
    later = now + timedelta(minutes=1)
    held = await rig.ctx.db.write(
        repo.claim_due_syncs, now=later, lease_until=later + HOUR, limit=100
    )
    assert account.id not in held
    lapsed = now + HOUR + timedelta(seconds=1)
    taken = await rig.ctx.db.write(
        repo.claim_due_syncs, now=lapsed, lease_until=lapsed + HOUR, limit=100
    )
    assert account.id in taken

    # The upkeep loop's own pass starts the re-sync and moves the due time an interval on.
    await rig.ctx.db.write(repo.schedule_sync, account.id, rig.ctx.now() - timedelta(seconds=1))
    assert await rig.upkeep.resync_due() >= 1
    resynced = await rig.get(account.id)
    assert resynced.last_sync is not None and resynced.last_sync.id != first_run
    assert resynced.upkeep.next_sync_time is not None
    assert resynced.upkeep.next_sync_time > rig.ctx.now() + HOUR - timedelta(minutes=1)
    settled = await rig.settle(account.id)
    assert settled.last_sync is not None and settled.last_sync.state == SyncState.SUCCEEDED
    assert settled.last_sync.contacts_synced == 120 and settled.last_sync.contacts_created == 0


async def test_a_resync_never_starts_on_top_of_a_running_sync(rig: Rig) -> None:
    # A slow account: its first sync is still listing when the re-sync comes due.
    account = await rig.connect(tier="verified", followers="500", page_delay_ms="40")
    running = account.last_sync
    assert running is not None and running.state == SyncState.RUNNING
    await rig.ctx.db.write(repo.schedule_sync, account.id, rig.ctx.now() - timedelta(seconds=1))
    assert await rig.upkeep.resync_due() >= 1
    during = await rig.get(account.id)
    assert during.last_sync is not None and during.last_sync.id == running.id  # the same run
    assert during.upkeep.next_sync_time is not None
    assert during.upkeep.next_sync_time > rig.ctx.now()  # and the due time moved on
    settled = await rig.settle(account.id)
    assert settled.last_sync is not None and settled.last_sync.state == SyncState.SUCCEEDED


async def test_the_loop_resyncs_due_channels_a_few_at_a_time(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    rig = Rig(ctx, hub, merchant)
    rig.upkeep = ChannelUpkeep(
        ctx, rig.syncer, hub, UpkeepSettings(concurrent=1, safety_poll_seconds=0.05)
    )
    try:
        made = [await rig.connect(tier="verified", followers="50") for _ in range(3)]
        firsts = {a.id: (await rig.settle(a.id)).last_sync for a in made}
        for a in made:
            await ctx.db.write(repo.schedule_sync, a.id, ctx.now() - timedelta(seconds=1))
        rig.upkeep.start()
        for _ in range(200):
            latest = {a.id: await ctx.db.read(syncs.latest, a.id) for a in made}
            if all(
                r is not None and r.id != firsts[c].id and r.state == SyncState.SUCCEEDED  # type: ignore[union-attr]
                for c, r in latest.items()
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"not every channel was re-synced: {latest}")
        for a in made:
            again = await rig.get(a.id)
            assert again.upkeep.next_sync_time is not None
            assert again.upkeep.next_sync_time > ctx.now() + HOUR - timedelta(minutes=1)
    finally:
        await rig.close()


async def test_health_follows_its_inputs_with_an_event_each_way(rig: Rig) -> None:
    account = await rig.settle((await rig.connect(tier="verified", followers="10")).id)
    assert account.upkeep.issues == Issue(0)
    await rig.ctx.db.write(
        repo.set_webhook, account.id, WebhookState.FAILING, "https://x", "statusCode 404", None
    )
    assert await refresh_health(rig.ctx, account.id) == Issue.WEBHOOK_FAILING
    # The quota, read and used up: a second issue, no second event.
    await rig.ctx.db.write(repo.record_quota, account.id, 100, 100, rig.ctx.now())
    assert await refresh_health(rig.ctx, account.id) == (
        Issue.WEBHOOK_FAILING | Issue.QUOTA_EXHAUSTED
    )
    unhealthy = await rig.get(account.id)
    assert unhealthy.upkeep.unhealthy_since is not None
    listed, _ = await rig.channels.list_page(
        LOCAL, f"merchants/{rig.merchant}", 0, "", needs_attention=True
    )
    assert [c.id for c in listed] == [account.id]
    # A stale follower list, seen only as time passes.
    rig.ctx.follower_sync_interval = timedelta(microseconds=1)
    assert Issue.FOLLOWERS_STALE in (await refresh_health(rig.ctx, account.id) or Issue(0))
    rig.ctx.follower_sync_interval = HOUR

    await rig.ctx.db.write(
        repo.set_webhook, account.id, WebhookState.VERIFIED, "https://x", "", rig.ctx.now()
    )
    await rig.ctx.db.write(repo.record_quota, account.id, 100, 10, rig.ctx.now())
    assert await refresh_health(rig.ctx, account.id) == Issue(0)
    healthy = await rig.get(account.id)
    assert healthy.upkeep.unhealthy_since is None
    listed, _ = await rig.channels.list_page(
        LOCAL, f"merchants/{rig.merchant}", 0, "", needs_attention=True
    )
    assert listed == []

    wanted = EventFilter(kinds=frozenset({EventKind.CHANNEL_UNHEALTHY, EventKind.CHANNEL_HEALTHY}))
    found = await rig.ctx.db.read(events.after, rig.merchant, START, 100, wanted)
    assert [(e.kind, e.channel, e.failure_reason, e.counters) for e in found] == [
        (EventKind.CHANNEL_UNHEALTHY, account.id, "WEBHOOK_FAILING", None),
        (EventKind.CHANNEL_HEALTHY, account.id, "", None),
    ]


async def test_refused_credentials_make_the_channel_unhealthy(rig: Rig) -> None:
    account = await rig.settle((await rig.connect(tier="verified", followers="10")).id)
    await rig.channels.mark_credentials_invalid(account)
    refused = await rig.get(account.id)
    assert refused.upkeep.issues == Issue.CREDENTIALS_REFUSED


async def test_a_channel_that_cannot_set_webhooks_says_what_to_set_by_hand(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    rig = Rig(ctx, hub, merchant)
    try:
        unknown = await rig.settle((await rig.connect(tier="verified", followers="5")).id)
        u = unknown.upkeep
        assert (u.webhook_state, u.webhook_endpoint) == (WebhookState.MANUAL, "")
        assert unknown.webhook_path in u.webhook_detail
        assert "BROADCASTER_PUBLIC_URL" in u.webhook_detail
        assert rig.upkeep.webhook_url(unknown) == ""

        rig.upkeep = ChannelUpkeep(ctx, rig.syncer, hub, public_url="https://hooks.example.com")
        known = await rig.settle((await rig.connect(tier="verified", followers="5")).id)
        url = f"https://hooks.example.com{known.webhook_path}"
        assert rig.upkeep.webhook_url(known) == url
        # The test channel's API cannot set webhooks: the full URL to paste, by hand.
        assert known.upkeep.webhook_state == WebhookState.MANUAL
        assert known.upkeep.webhook_detail.endswith(url)
        assert known.upkeep.issues == Issue(0)  # by hand is not failing
    finally:
        await rig.close()
