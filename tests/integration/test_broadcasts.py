"""Broadcast drafts at the service layer: state rules that need a non-draft broadcast."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.errors import FailedPrecondition
from broadcaster.domain.messages import TextMessage
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.store.tables import broadcasts as table


async def test_only_drafts_change(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> None:
    parent = f"merchants/{merchant}"
    made = await Channels(ctx, hub).create(
        LOCAL, parent, "fake", {"token": "t", "account": merchant}, ""
    )
    service = Broadcasts(ctx, hub)
    draft = DraftInput(
        "Sale",
        f"{parent}/channels/{made.id}",
        InteractionWindow.LAST_7_DAYS,
        (),
        (TextMessage("hi"),),
    )
    b = await service.create(LOCAL, parent, draft, "")
    name = f"{parent}/broadcasts/{b.id}"
    await ctx.db.write(
        lambda conn: conn.execute(
            update(table).where(table.c.id == b.id).values(state=int(BroadcastState.SENT))
        )
    )
    for attempt in (
        service.update(LOCAL, name, ["display_name"], draft),
        service.delete(LOCAL, name),
    ):
        with pytest.raises(FailedPrecondition) as e:
            await attempt
        assert e.value.reason == "BROADCAST_NOT_DRAFT"
    copy = await service.copy(LOCAL, name, "")
    assert copy.state is BroadcastState.DRAFT and copy.display_name == "Copy of Sale"
