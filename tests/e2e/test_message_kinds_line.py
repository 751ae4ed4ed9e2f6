"""Every kind of bubble end to end: a real `broadcaster serve` over gRPC and the LINE emulator.

For each kind a draft is created, estimated, sent, and what the emulator recorded is exactly the
LINE message object asked for; the broadcast's previews and its Message Center events show the
bubbles. Invalid bubbles are refused naming the exact field; a silent send reaches LINE as one
(the broadcast and its test send)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from broadcaster_line_emulator import Faults
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import event_service_pb2 as epb
from tests.databases import fresh_database
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import A, Api, Servers, merchant

IMG = "https://cdn.example.com/img/a.png"
BUY = {"type": "uri", "label": "Buy", "uri": "https://shop.example.com/p/1"}


def _bubble(title: str) -> dict[str, Any]:
    return {
        "type": "bubble",
        "hero": {"type": "image", "url": IMG, "size": "full"},
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "text", "text": title, "weight": "bold"}],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "button", "action": dict(BUY)}],
        },
    }


FLEX = {
    "type": "flex",
    "altText": "Winter sale",
    "contents": {"type": "carousel", "contents": [_bubble("Coat"), _bubble("Hat")]},
}
IMAGEMAP = {
    "type": "imagemap",
    "baseUrl": "https://cdn.example.com/rich/banner",
    "altText": "Spring banner",
    "baseSize": {"width": 1040, "height": 520},
    "actions": [
        {
            "type": "uri",
            "linkUri": "https://shop.example.com/",
            "area": {"x": 0, "y": 0, "width": 1040, "height": 520},
        }
    ],
}
BUTTONS = {
    "type": "template",
    "altText": "New arrivals",
    "template": {"type": "buttons", "title": "New", "text": "Have a look", "actions": [BUY]},
}
CAROUSEL = {
    "type": "template",
    "altText": "Picks",
    "template": {
        "type": "carousel",
        "columns": [{"text": f"Pick {i}", "actions": [BUY]} for i in range(3)],
    },
}
QUICK = {
    "type": "text",
    "text": "Which size?",
    "quickReply": {
        "items": [
            {"type": "action", "action": {"type": "message", "label": s, "text": s}}
            for s in ("S", "M")
        ]
    },
}
EMOJI = ("5ac1bfd5040ab15980c9b435", "001")


def native(data: dict[str, Any]) -> bpb.BroadcastMessage:
    payload = struct_pb2.Struct()
    payload.update(data)
    return bpb.BroadcastMessage(channel_native=payload)


# name -> (the bubble asked for, the LINE message object LINE must receive, its preview)
KINDS: dict[str, tuple[bpb.BroadcastMessage, dict[str, Any], str]] = {
    "emoji": (
        bpb.BroadcastMessage(
            text=bpb.TextContent(
                text="Sale $",
                emojis=[bpb.TextEmoji(index=5, product_id=EMOJI[0], emoji_id=EMOJI[1])],
            )
        ),
        {
            "type": "text",
            "text": "Sale $",
            "emojis": [{"index": 5, "productId": EMOJI[0], "emojiId": EMOJI[1]}],
        },
        "Sale $",
    ),
    "image": (
        bpb.BroadcastMessage(
            image=bpb.ImageContent(original_content_uri=IMG, preview_image_uri=IMG)
        ),
        {"type": "image", "originalContentUrl": IMG, "previewImageUrl": IMG},
        "[Image]",
    ),
    "sticker": (
        bpb.BroadcastMessage(sticker=bpb.StickerContent(package_id="446", sticker_id="1988")),
        {"type": "sticker", "packageId": "446", "stickerId": "1988"},
        "[Sticker]",
    ),
    "video": (
        bpb.BroadcastMessage(
            video=bpb.VideoContent(
                original_content_uri="https://cdn.example.com/v.mp4",
                preview_image_uri=IMG,
                tracking_id="sale-1",
            )
        ),
        {
            "type": "video",
            "originalContentUrl": "https://cdn.example.com/v.mp4",
            "previewImageUrl": IMG,
            "trackingId": "sale-1",
        },
        "[Video]",
    ),
    "audio": (
        bpb.BroadcastMessage(
            audio=bpb.AudioContent(
                original_content_uri="https://cdn.example.com/a.m4a", duration_ms=61_000
            )
        ),
        {"type": "audio", "originalContentUrl": "https://cdn.example.com/a.m4a", "duration": 61000},
        "[Audio]",
    ),
    "flex": (native(FLEX), FLEX, "[Card] Winter sale — 2 items"),
    "imagemap": (native(IMAGEMAP), IMAGEMAP, "[Rich message] Spring banner"),
    "buttons": (native(BUTTONS), BUTTONS, "[Card] New arrivals"),
    "carousel": (native(CAROUSEL), CAROUSEL, "[Card] Picks — 3 items"),
    "quick_reply": (native(QUICK), QUICK, "Which size?"),
}


@pytest.fixture(scope="module")
def api(
    database_url: str, emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path_factory.mktemp(f"kinds-{backend}")) as url:
        servers = Servers(url, emulator, Path(tmp_path_factory.mktemp("kinds-logs")))
        yield servers.start()
        servers.stop_all()


def _channel(api: Api, emulator: EmulatorThread, followers: int = 3) -> tuple[str, Any, Any]:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=followers)
    parent = merchant()
    made = api.connect(parent, account)
    api.import_contacts(made.name, emulator.call(emu.follower_ids, account))
    return parent, made, account


def _create(
    api: Api, parent: str, channel: str, messages: list[bpb.BroadcastMessage], **more: Any
) -> bpb.Broadcast:
    return api.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent,
            broadcast=bpb.Broadcast(
                display_name="Kinds",
                channel=channel,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=messages,
                **more,
            ),
        ),
        metadata=A,
    )


def _violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return [(v.field, v.reason) for v in bad.field_violations]
    return []


def test_line_publishes_every_kind(api: Api, emulator: EmulatorThread) -> None:
    _, made, _ = _channel(api, emulator, followers=1)
    got = api.channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
    kinds = {k.kind: dict(k.limits) for k in got.capabilities.message_kinds}
    assert set(kinds) == {"text", "image", "sticker", "video", "audio", "channel_native"}
    assert kinds["channel_native"]["max_flex_bubbles"] == 12
    assert kinds["text"]["max_emojis"] == 20


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_goes_out_exactly_as_asked(api: Api, emulator: EmulatorThread, kind: str) -> None:
    asked, line_json, preview = KINDS[kind]
    parent, made, account = _channel(api, emulator)
    draft = _create(
        api, parent, made.name, [bpb.BroadcastMessage(text=bpb.TextContent(text="Hi")), asked]
    )
    assert draft.messages[1] == asked
    assert list(draft.previews) == ["Hi", preview]

    estimate = api.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=parent, name=draft.name), metadata=A
    )
    assert estimate.expected_recipients == 3
    api.send(draft.name)
    done = api.finished(draft.name)

    assert done.state == bpb.Broadcast.SENT and done.counters.sent == 3
    sends = emulator.call(lambda: list(account.deliveries.sends))
    assert [list(s.messages) for s in sends] == [[{"type": "text", "text": "Hi"}, line_json]]
    assert [s.notification_disabled for s in sends] == [False]
    events = api.events.ListEvents(
        epb.ListEventsRequest(
            parent=parent, broadcast=draft.name, kinds=[epb.Event.BROADCAST_MESSAGE]
        ),
        metadata=A,
    ).events
    assert len(events) == 3
    assert all(list(e.messages) == list(draft.messages) for e in events)


def test_a_silent_broadcast_and_its_test_send_reach_line_as_silent(
    api: Api, emulator: EmulatorThread
) -> None:
    parent, made, account = _channel(api, emulator)
    contacts = api.contacts.ListContacts(
        cpb.ListContactsRequest(parent=made.name),
        metadata=A,
    ).contacts
    draft = _create(api, parent, made.name, [KINDS["sticker"][0]], notification_disabled=True)
    assert draft.notification_disabled

    api.broadcasts.SendTestBroadcast(
        bpb.SendTestBroadcastRequest(name=draft.name, contacts=[contacts[0].name]), metadata=A
    )
    api.send(draft.name)
    api.finished(draft.name)

    sends = emulator.call(
        lambda: [(s.endpoint, s.notification_disabled) for s in account.deliveries.sends]
    )
    assert sends == [("push", True), ("multicast", True)]


@pytest.mark.parametrize(
    ("message", "violation"),
    [
        (
            bpb.BroadcastMessage(sticker=bpb.StickerContent(package_id="", sticker_id="1")),
            "broadcast.messages[1].sticker.package_id",
        ),
        (
            bpb.BroadcastMessage(
                image=bpb.ImageContent(
                    original_content_uri="http://x.example/a.png", preview_image_uri=IMG
                )
            ),
            "broadcast.messages[1].image.original_content_uri",
        ),
        (
            native(
                {
                    **FLEX,
                    "contents": {
                        "type": "carousel",
                        "contents": [
                            {
                                **_bubble("x"),
                                "body": {
                                    "type": "box",
                                    "layout": "vertical",
                                    "contents": [{"type": "text"}],
                                },
                            }
                        ],
                    },
                }
            ),
            "broadcast.messages[1].channel_native.contents.contents[0].body.contents[0].text",
        ),
        (
            native({k: v for k, v in BUTTONS.items() if k != "altText"}),
            "broadcast.messages[1].channel_native.altText",
        ),
        (
            native({**IMAGEMAP, "baseSize": {"width": float("nan"), "height": 520}}),
            "broadcast.messages[1].channel_native",
        ),
    ],
)
def test_invalid_bubbles_are_refused_naming_the_field(
    api: Api, emulator: EmulatorThread, message: bpb.BroadcastMessage, violation: str
) -> None:
    parent, made, _ = _channel(api, emulator, followers=1)
    ok = bpb.BroadcastMessage(text=bpb.TextContent(text="Hi"))

    with pytest.raises(grpc.RpcError) as e:
        _create(api, parent, made.name, [ok, message])

    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in _violations(e.value)] == [violation]


def test_an_outage_of_lines_own_check_does_not_block_editing(
    api: Api, emulator: EmulatorThread
) -> None:
    parent, made, account = _channel(api, emulator)
    down = Faults(
        error_rate=1.0, error_statuses=(503,), endpoints=frozenset({"validate_multicast"})
    )
    estimate = bpb.EstimateAudienceRequest(parent=parent)
    emulator.call(emulator.emulator.set_faults, down, account)
    try:
        draft = _create(api, parent, made.name, [KINDS["flex"][0]])  # saved all the same
        estimate.name = draft.name
        unchecked = api.broadcasts.EstimateAudience(estimate, metadata=A)
    finally:
        emulator.call(emulator.emulator.set_faults, None, account)
    checked = api.broadcasts.EstimateAudience(estimate, metadata=A)
    inline = api.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=parent, channel=made.name, audience=draft.audience),
        metadata=A,
    )

    assert unchecked.message_check == bpb.AudienceEstimate.CHECK_UNAVAILABLE
    assert "503" in unchecked.message_check_detail
    assert unchecked.expected_recipients == 3  # the rest of the estimate as ever
    assert checked.message_check == bpb.AudienceEstimate.MESSAGES_ACCEPTED
    assert inline.message_check == bpb.AudienceEstimate.MESSAGE_CHECK_UNSPECIFIED
