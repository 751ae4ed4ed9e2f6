"""Webhook ingestion through the service, on SQLite and PostgreSQL: bad events are refused one by
one, one request's failure never fails another's, the dedupe table is pruned."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from broadcaster.channels import InteractionEvent, InteractionKind
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ChannelAccount, ContactFilter
from broadcaster.domain.paging import Page
from broadcaster.services import webhooks
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.services.webhooks import WebhookIngest
from broadcaster.store import channel_contacts, channels, contacts, webhook_events
from broadcaster.store.clock import from_us
from tests.fakechannel import sign

T0 = 1_760_000_000_000


async def _channel(hub: ChannelHub, merchant: str, token: str) -> str:
    channel_id = new_id()
    sealed = hub.sealer.seal({"token": token, "account": channel_id})
    account = (AccountTier.VERIFIED, f"acct-{channel_id}", "Shop", "@shop", "")
    await hub._db.write(channels.create, merchant, channel_id, "fake", account, sealed, from_us(1))
    return channel_id


def _body(*items: tuple[str, str, str, int]) -> bytes:
    return json.dumps(
        {"events": [{"id": i, "user": u, "kind": k, "ts": t} for i, u, k, t in items]}
    ).encode()


async def _external_ids(ctx: ServiceContext, merchant: str, channel_id: str) -> set[str]:
    found = await ctx.db.read(
        contacts.list_page, merchant, channel_id, ContactFilter(), Page(1000, None)
    )
    return {c.external_id for c in found}


@pytest.fixture
async def ingest(ctx: ServiceContext, hub: ChannelHub) -> Any:
    running = WebhookIngest(ctx, hub)
    yield running
    await running.stop()


async def test_bad_events_are_refused_alone(
    ctx: ServiceContext, hub: ChannelHub, ingest: WebhookIngest, merchant: str
) -> None:
    channel_id = await _channel(hub, merchant, "tok")
    tag = new_id()
    body = _body(
        (f"{tag}-nul\x00id", "u-nul", "follow", T0),
        (f"{tag}-long", "u" * 5000, "follow", T0),
        (f"{tag}-esc", "u\x1b[2J", "message", T0),
        (f"{tag}-ok", "u-ok", "message", T0),
    )
    receipt = await ingest.receive(
        "fake", channel_id, {"x-fake-signature": sign("tok", body)}, body
    )
    assert receipt == webhooks.Receipt(recorded=1, refused=3)
    assert await _external_ids(ctx, merchant, channel_id) == {"u-ok"}


async def test_a_failing_request_never_fails_another_in_its_transaction(
    ctx: ServiceContext,
    hub: ChannelHub,
    ingest: WebhookIngest,
    merchant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good, bad = await _channel(hub, merchant, "good"), await _channel(hub, merchant, "bad")
    record = channel_contacts.record_news

    def poisoned(conn: Connection, m: str, channel: str, *args: Any) -> Any:
        if channel == bad:
            raise RuntimeError("this request cannot be recorded")
        return record(conn, m, channel, *args)

    monkeypatch.setattr(channel_contacts, "record_news", poisoned)
    now = datetime.now(UTC)
    loop = asyncio.get_running_loop()

    accounts: dict[str, ChannelAccount] = {}
    for channel_id in (good, bad):
        found = await hub.get(channel_id)
        assert found is not None
        accounts[channel_id] = found[0]

    def pending(channel_id: str, user: str) -> Any:
        event = InteractionEvent(f"{channel_id}-{user}", user, InteractionKind.MESSAGE, now)
        return webhooks._Pending(accounts[channel_id], [event], loop.create_future())

    batch = [pending(good, "u1"), pending(bad, "u2"), pending(good, "u3")]
    await ingest._commit(batch, len(batch))
    assert [p.done.exception() is None for p in batch] == [True, False, True]
    assert await _external_ids(ctx, merchant, good) == {"u1", "u3"}
    assert await _external_ids(ctx, merchant, bad) == set()


async def test_a_future_timestamp_is_taken_as_the_moment_of_receipt(
    ctx: ServiceContext, hub: ChannelHub, ingest: WebhookIngest, merchant: str
) -> None:
    channel_id = await _channel(hub, merchant, "tok")
    far = 253_402_300_799_000  # 9999-12-31
    body = _body((f"{new_id()}-far", "u-far", "follow", far))
    before = datetime.now(UTC)
    await ingest.receive("fake", channel_id, {"x-fake-signature": sign("tok", body)}, body)
    (found,) = await ctx.db.read(
        contacts.list_page, merchant, channel_id, ContactFilter(), Page(10, None)
    )
    assert found.last_interaction_time is not None
    assert before <= found.last_interaction_time <= datetime.now(UTC) + timedelta(seconds=1)


async def test_a_database_error_never_logs_what_was_being_written(
    ctx: ServiceContext,
    hub: ChannelHub,
    ingest: WebhookIngest,
    merchant: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel_id = await _channel(hub, merchant, "tok")
    secret = "a-private-message-body-0123456789"

    def failing(conn: Connection, *args: Any) -> Any:
        # A NOT NULL violation whose row holds the secret: PostgreSQL's DETAIL would quote it.
        conn.execute(
            text(
                "INSERT INTO webhook_events (channel_id, event_id, receive_time) "
                "VALUES (:channel, :secret, NULL)"
            ),
            {"channel": channel_id, "secret": secret},
        )

    monkeypatch.setattr(channel_contacts, "record_news", failing)
    body = _body((f"{new_id()}-1", "u1", "message", T0))
    with pytest.raises(DBAPIError) as raised:
        await ingest.receive("fake", channel_id, {"x-fake-signature": sign("tok", body)}, body)

    assert "could not record" in caplog.text
    for shown in (caplog.text, str(raised.value)):
        assert secret not in shown
        assert "Failing row contains" not in shown


async def test_event_ids_are_forgotten_after_the_dedupe_window(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    channel_id = await _channel(hub, merchant, "tok")
    now = datetime.now(UTC)
    old, recent = now - webhooks.DEDUPE_WINDOW - timedelta(hours=1), now - timedelta(hours=1)
    await ctx.db.write(webhook_events.claim_new, channel_id, [f"old-{n}" for n in range(25)], old)
    await ctx.db.write(webhook_events.claim_new, channel_id, ["recent"], recent)

    def remaining(conn: Connection) -> set[str]:
        rows = conn.execute(
            text("SELECT event_id FROM webhook_events WHERE channel_id = :c"), {"c": channel_id}
        )
        return {r[0] for r in rows}

    # Each statement deletes a bounded number of rows.
    assert await ctx.db.write(webhook_events.prune, now - webhooks.DEDUPE_WINDOW, 10) == 10
    assert len(await ctx.db.read(remaining)) == 16
    running = WebhookIngest(ctx, hub, prune_batch=10)
    # Every replica may prune at once: what one deleted, the others skip.
    pruned = await asyncio.gather(running.prune(), running.prune())
    assert sum(pruned) >= 15
    assert await ctx.db.read(remaining) == {"recent"}
    # A redelivery of a forgotten event is new again; a recent one is still a redelivery.
    assert await ctx.db.write(webhook_events.claim_new, channel_id, ["old-1", "recent"], now) == {
        "old-1"
    }


async def test_unknown_channels_are_remembered_briefly(
    ctx: ServiceContext, merchant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broadcaster.channels.manager import PluginManager
    from broadcaster.services import channel_hub
    from broadcaster.store.sealing import Sealer
    from tests import fakechannel

    now = [1000.0]
    registry = PluginManager.load((), [fakechannel]).register_channels()
    hub = ChannelHub(registry, Sealer(("k" * 32,)), ctx.db, {}, clock=lambda: now[0])
    reads: list[Any] = []
    read = ctx.db.read

    async def counted(fn: Any, *args: Any) -> Any:
        reads.append(args)
        return await read(fn, *args)

    monkeypatch.setattr(ctx.db, "read", counted)
    unknown = new_id()
    for _ in range(50):
        assert await hub.get(unknown) is None
    assert len(reads) == 1
    # Then it is looked up again: one created meanwhile (here stored directly) is found.
    sealed = hub.sealer.seal({"token": "t", "account": unknown})
    account = (AccountTier.VERIFIED, f"acct-{unknown}", "Shop", "@shop", "")
    await ctx.db.write(channels.create, merchant, unknown, "fake", account, sealed, from_us(1))
    now[0] += channel_hub.UNKNOWN_SECONDS + 0.1
    found = await hub.get(unknown)
    assert found is not None and found[0].id == unknown
    # The set of remembered ids is bounded.
    monkeypatch.setattr(channel_hub, "MAX_UNKNOWN", 10)
    for n in range(30):
        await hub.get(f"nope-{n}")
    assert len(hub._unknown) == 10
    await hub.close()
