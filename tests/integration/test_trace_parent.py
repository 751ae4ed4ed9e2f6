"""A broadcast keeps the traceparent of the call that started it, and a claim of its batches
hands it over to the dispatcher, on both databases (the spans themselves: tests/e2e)."""

from __future__ import annotations

from datetime import timedelta

from broadcaster.domain.auth import LOCAL
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import broadcasts, dispatch
from tests.integration.test_sending import _shop

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_claimed_batch_carries_the_traceparent_stored_with_its_broadcast(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    # 120 recipients: three batches of the fake channel's 50; no dispatcher running.
    async for shop in _shop(ctx, hub, merchant, 120, start=False):
        traced = await shop.sending.send(LOCAL, await shop.draft("traced"), "")
        untraced = await shop.sending.send(LOCAL, await shop.draft("untraced"), "")
        await ctx.db.write(broadcasts.set_trace_parent, traced.id, TRACEPARENT)
        now = ctx.now()
        assert await ctx.db.write(
            dispatch.acquire_channel, shop.channel_id, "me", now + timedelta(seconds=60), now
        )
        claimed = await ctx.db.write(
            dispatch.claim,
            channel=shop.channel_id,
            owner="me",
            lease_until=now + timedelta(seconds=60),
            now=now,
            limit=10,
        )
        by_broadcast = {(c.broadcast, c.batch): c.trace_parent for c in claimed}
        assert len(by_broadcast) == 6
        assert {p for (b, _), p in by_broadcast.items() if b == traced.id} == {TRACEPARENT}
        assert {p for (b, _), p in by_broadcast.items() if b == untraced.id} == {None}
        await ctx.db.write(dispatch.release_channel, shop.channel_id, "me")
