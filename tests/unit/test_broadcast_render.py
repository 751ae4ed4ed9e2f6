"""Rendered broadcasts are cached by value: any change renders anew."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from broadcaster.api.broadcasts import broadcast_out
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import Broadcast, BroadcastState, Counters
from broadcaster.domain.messages import TextMessage

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_changes_are_never_served_from_the_cache() -> None:
    b = Broadcast(
        merchant="m",
        id="b1",
        display_name="Sale",
        channel="c1",
        audience=Audience(InteractionWindow.LAST_7_DAYS, None),
        messages=(TextMessage("hi"),),
        state=BroadcastState.DRAFT,
        group_name="",
        create_time=T,
        update_time=T,
    )
    first = broadcast_out(b)
    assert broadcast_out(b) == first
    sending = replace(b, state=BroadcastState.SENDING, counters=Counters(total=10, sent=3))
    out = broadcast_out(sending)
    assert out.state == out.SENDING and out.counters.sent == 3
    assert broadcast_out(replace(sending, counters=Counters(total=10, sent=4))).counters.sent == 4
    assert broadcast_out(b) == first
