"""Contact sync survives its process: a run whose lease lapsed is taken over and resumed from
its last committed cursor, without losing or duplicating contacts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.model import ContactFilter, SyncState
from broadcaster.domain.paging import Page
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.context import ServiceContext
from broadcaster.store import channel_contacts, contacts, syncs


async def test_orphaned_run_resumes_from_its_cursor(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    channels = Channels(ctx, hub)
    made = await channels.create(
        LOCAL,
        f"merchants/{merchant}",
        "fake",
        {"token": "t", "account": merchant, "tier": "verified", "followers": "1000"},
        "",
    )
    now = ctx.now()

    # A process started the run, committed the first 300 followers, and died.
    def crashed(conn):  # type: ignore[no-untyped-def]
        run = syncs.start(conn, made.id, "dead-process", now - timedelta(microseconds=1), now)
        firsts = [(f"f-{merchant}-{n:06d}", "", "") for n in range(300)]
        created = channel_contacts.record_followers(conn, merchant, made.id, run.id, firsts, now)
        syncs.record_page(conn, run.id, cursor="300", synced=300, created=created)
        return run.id

    run_id = await ctx.db.write(crashed)
    survivor = ContactSyncer(ctx, hub, channels)
    survivor.watch(interval=0.05)
    try:
        for _ in range(200):
            run = await ctx.db.read(syncs.get, run_id)
            assert run is not None
            if run.state != SyncState.RUNNING:
                break
            await asyncio.sleep(0.05)
    finally:
        await survivor.stop()
    assert run.state == SyncState.SUCCEEDED, run
    assert (run.contacts_synced, run.contacts_created, run.contacts_unfollowed) == (1000, 1000, 0)
    stored = await ctx.db.read(
        contacts.list_page, merchant, made.id, ContactFilter(), Page(2000, None)
    )
    assert sorted(c.external_id for c in stored) == [f"f-{merchant}-{n:06d}" for n in range(1000)]
    assert all(c.display_name for c in stored)  # profiles were fetched too


async def test_a_second_sync_while_one_runs_reports_the_first(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    channels = Channels(ctx, hub)
    made = await channels.create(
        LOCAL,
        f"merchants/{merchant}",
        "fake",
        {
            "token": "t",
            "account": merchant,
            "tier": "verified",
            "followers": "300",
            "page_delay_ms": "50",
        },
        "",
    )
    syncer = ContactSyncer(ctx, hub, channels)
    name = f"merchants/{merchant}/channels/{made.id}"
    first, second = await asyncio.gather(syncer.start(LOCAL, name), syncer.start(LOCAL, name))
    assert first.id == second.id
    await syncer.wait(first.id)
    await syncer.stop()
