"""LINE's own check of a draft's messages (its multicast validation endpoint): what it refuses
is named in the API's paths, nothing is sent, and an outage is ChannelUnavailable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.rules import api_path
from broadcaster_line_emulator import Account, Faults, LineEmulator

from broadcaster.channels import (
    ChannelNativeMessage,
    ChannelUnavailable,
    ImageMessage,
    Message,
    StickerMessage,
    TextMessage,
)

IMG = "https://cdn.example.com/a.png"
CARD = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": []}}


async def test_messages_line_accepts_pass_and_nothing_is_sent(
    emulator: LineEmulator, shop: Account, line_channel: Callable[[Account], LineChannel]
) -> None:
    messages: list[Message] = [TextMessage("hi"), StickerMessage("446", "1988")]

    assert await line_channel(shop).check_messages(messages) == []
    assert list(shop.deliveries.sends) == [] and shop.quota.usage == 0


async def test_what_line_refuses_is_named_in_the_api_paths(
    shop: Account, line_channel: Callable[[Account], LineChannel]
) -> None:
    # Messages the local rules would refuse first, sent to LINE's check as they are.
    carousel = {"type": "flex", "altText": "x", "contents": {"type": "carousel",
                                                             "contents": [CARD] * 13}}  # fmt: skip
    messages: list[Message] = [
        TextMessage("fine"),
        ImageMessage(IMG, "http://cdn.example.com/p.png"),
        ChannelNativeMessage.of(carousel),
    ]

    found = await line_channel(shop).check_messages(messages)

    assert [v.field for v in found] == [
        "messages[1].image.preview_image_uri",
        "messages[2].channel_native.contents.contents",
    ]
    assert all(v.description.startswith("LINE refuses it: ") for v in found)


async def test_an_outage_is_channel_unavailable(
    emulator: LineEmulator, shop: Account, line_channel: Callable[[Account], LineChannel]
) -> None:
    emulator.set_faults(Faults(error_rate=1.0, error_statuses=(503,)), shop)

    with pytest.raises(ChannelUnavailable):
        await line_channel(shop).check_messages([TextMessage("hi")])


@pytest.mark.parametrize(
    ("prop", "path"),
    [
        ("messages[0].text", "messages[0].text"),
        ("messages[0].emojis[1].productId", "messages[0].text.emojis[1].product_id"),
        ("messages[1].originalContentUrl", "messages[1].image.original_content_uri"),
        ("messages[2].stickerId", "messages[2].sticker.sticker_id"),
        ("messages[2].quickReply", "messages[2].sticker"),
        ("messages[3].template.text", "messages[3].channel_native.template.text"),
        ("messages[3]", "messages[3].channel_native"),
        ("messages[9].text", "messages"),
        ("to[0]", "messages"),
    ],
)  # fmt: skip
def test_line_properties_become_api_paths(prop: str, path: str) -> None:
    messages: list[Message] = [
        TextMessage("$ $"),
        ImageMessage(IMG, IMG),
        StickerMessage("1", "2"),
        ChannelNativeMessage.of({"type": "template"}),
    ]
    assert api_path(prop, messages) == path
