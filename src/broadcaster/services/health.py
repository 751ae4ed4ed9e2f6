"""Keeping a channel's health current: assessed again (store.upkeep.refresh_health) whenever one
of its inputs changes, counted in the metrics, and its lifecycle event announced to watchers."""

from __future__ import annotations

from broadcaster.domain.health import Issue
from broadcaster.services.context import ServiceContext
from broadcaster.store import upkeep as repo


async def refresh_health(ctx: ServiceContext, channel_id: str) -> Issue | None:
    """The channel's issues now (None: not connected), after assessing and keeping them."""
    change = await ctx.db.write(
        repo.refresh_health, channel_id, ctx.now(), ctx.followers_stale_after
    )
    if change is None:
        return None
    if change.after != change.before:
        ctx.metrics.health_changed(change.channel_type, int(change.before), int(change.after))
        if bool(change.after) != bool(change.before):
            ctx.events_recorded(change.merchant)
    return change.after
