"""Rendered broadcasts are cached: any change renders anew, and a page is the broadcasts it
holds, in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from broadcaster.api.broadcasts import broadcast_out, list_out
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import Broadcast, BroadcastState, Counters
from broadcaster.domain.messages import ImageMessage, TextMessage
from broadcaster.v1 import broadcast_service_pb2 as pb

T = datetime(2026, 1, 1, tzinfo=UTC)


def _draft() -> Broadcast:
    return Broadcast(
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


def test_changes_are_never_served_from_the_cache() -> None:
    b = _draft()
    first = broadcast_out(b)
    assert broadcast_out(b) == first
    sending = replace(b, state=BroadcastState.SENDING, counters=Counters(total=10, sent=3))
    out = broadcast_out(sending)
    assert out.state == out.SENDING and out.counters.sent == 3
    assert broadcast_out(replace(sending, counters=Counters(total=10, sent=4))).counters.sent == 4
    assert broadcast_out(b) == first


def test_a_page_is_its_broadcasts_in_order_and_its_token() -> None:
    b = _draft()
    items = [
        b,
        replace(b, id="b2", messages=(ImageMessage("https://x/o.png", "https://x/p.png"),)),
        replace(b, id="b3", state=BroadcastState.SENT, counters=Counters(total=2, sent=2)),
        _draft(),  # equal to the first, another object
    ]
    page = list_out(items, "next")
    assert page == pb.ListBroadcastsResponse(
        broadcasts=[broadcast_out(i) for i in items], next_page_token="next"
    )
    assert [x.name for x in page.broadcasts] == [
        "merchants/m/broadcasts/b1",
        "merchants/m/broadcasts/b2",
        "merchants/m/broadcasts/b3",
        "merchants/m/broadcasts/b1",
    ]
    assert list_out([], "") == pb.ListBroadcastsResponse()
