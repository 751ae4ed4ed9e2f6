"""LINE's rules for stickers, videos, audio, emoji and channel-native bubbles (imagemap,
template, flex, quick replies): valid shapes make spec-conforming requests, invalid ones are
named by their exact path, and numeric rules hold at every size (hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from broadcaster_line.native import preview_native
from broadcaster_line.rules import to_line_messages, validate_messages
from broadcaster_line.sending import encode_multicast, encode_push
from broadcaster_line_emulator.conformance import check_request
from broadcaster_line_emulator.validation import validate_multicast
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.channels import (
    AudioMessage,
    ChannelNativeMessage,
    Message,
    StickerMessage,
    TextEmoji,
    TextMessage,
    VideoMessage,
)

USER = "U" + "a" * 32
AUTH = {"Authorization": "Bearer token", "Content-Type": "application/json"}
IMG = "https://cdn.example.com/img/a.png"
VIDEO = "https://cdn.example.com/v/a.mp4"
AUDIO = "https://cdn.example.com/a/a.m4a"
BUY = {"type": "uri", "label": "Buy", "uri": "https://shop.example.com/p/1"}
EMOJI_ID = ("5ac1bfd5040ab15980c9b435", "001")


def bubble(title: str) -> dict[str, Any]:
    return {
        "type": "bubble",
        "hero": {"type": "image", "url": IMG, "size": "full", "aspectMode": "cover"},
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "text", "text": title, "weight": "bold"},
                {"type": "text", "text": "¥1,200", "color": "#999999"},
            ],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "button", "style": "primary", "action": dict(BUY)}],
        },
    }


FLEX_CAROUSEL = {
    "type": "flex",
    "altText": "Winter sale",
    "contents": {"type": "carousel", "contents": [bubble("Coat"), bubble("Hat"), bubble("Boots")]},
}
IMAGEMAP = {
    "type": "imagemap",
    "baseUrl": "https://cdn.example.com/rich/banner",
    "altText": "Spring banner",
    "baseSize": {"width": 1040, "height": 1040},
    "actions": [
        {
            "type": "uri",
            "linkUri": "https://shop.example.com/",
            "area": {"x": 0, "y": 0, "width": 520, "height": 1040},
        },
        {
            "type": "message",
            "text": "Hello",
            "area": {"x": 520, "y": 0, "width": 520, "height": 1040},
        },
    ],
}
BUTTONS = {
    "type": "template",
    "altText": "New arrivals",
    "template": {
        "type": "buttons",
        "thumbnailImageUrl": IMG,
        "title": "New arrivals",
        "text": "Tap to see them",
        "actions": [BUY, {"type": "postback", "label": "Later", "data": "later=1"}],
    },
}
CONFIRM = {
    "type": "template",
    "altText": "Join?",
    "template": {
        "type": "confirm",
        "text": "Join the winter club?",
        "actions": [
            {"type": "message", "label": "Yes", "text": "yes"},
            {"type": "message", "label": "No", "text": "no"},
        ],
    },
}
CAROUSEL = {
    "type": "template",
    "altText": "Picks",
    "template": {
        "type": "carousel",
        "columns": [
            {"thumbnailImageUrl": IMG, "title": f"Pick {i}", "text": "Nice", "actions": [BUY]}
            for i in range(3)
        ],
    },
}
IMAGE_CAROUSEL = {
    "type": "template",
    "altText": "Looks",
    "template": {
        "type": "image_carousel",
        "columns": [{"imageUrl": IMG, "action": BUY} for _ in range(2)],
    },
}
QUICK_TEXT = {
    "type": "text",
    "text": "Which size? $",
    "emojis": [{"index": 12, "productId": EMOJI_ID[0], "emojiId": EMOJI_ID[1]}],
    "quickReply": {
        "items": [
            {"type": "action", "action": {"type": "message", "label": s, "text": s}}
            for s in ("S", "M", "L")
        ]
        + [{"type": "action", "action": {"type": "location", "label": "Near me"}}]
    },
}
NATIVE = {
    "flex": FLEX_CAROUSEL,
    "imagemap": IMAGEMAP,
    "buttons": BUTTONS,
    "confirm": CONFIRM,
    "carousel": CAROUSEL,
    "image_carousel": IMAGE_CAROUSEL,
    "quick_text": QUICK_TEXT,
}
SHARED: dict[str, Message] = {
    "sticker": StickerMessage("446", "1988"),
    "video": VideoMessage(VIDEO, IMG, "winter-sale-1"),
    "audio": AudioMessage(AUDIO, 61_000),
    "emoji": TextMessage("Sale $ today $", (TextEmoji(5, *EMOJI_ID), TextEmoji(13, *EMOJI_ID))),
}


def native(data: dict[str, Any]) -> ChannelNativeMessage:
    return ChannelNativeMessage.of(data)


def paths(*messages: Message) -> list[str]:
    return [v.field for v in validate_messages(list(messages))]


def conforms(messages: list[Message], *, silent: bool = False) -> None:
    body = encode_multicast([USER], messages, silent)
    assert check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body) == []
    assert validate_multicast(json.loads(body)).errors == []  # the emulator's LINE rules
    push = encode_push(USER, messages, silent)
    assert check_request("POST", "/v2/bot/message/push", headers=AUTH, body=push) == []


@pytest.mark.parametrize("name", sorted(SHARED))
def test_every_shared_kind_is_valid_and_conforms(name: str) -> None:
    assert paths(SHARED[name]) == []
    conforms([SHARED[name]])


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_every_native_kind_is_valid_conforms_and_is_sent_as_given(name: str) -> None:
    message = native(NATIVE[name])

    assert paths(message) == []
    conforms([message])
    assert to_line_messages([message]) == [NATIVE[name]]


def test_line_json_of_the_shared_kinds() -> None:
    assert to_line_messages(list(SHARED.values())) == [
        {"type": "sticker", "packageId": "446", "stickerId": "1988"},
        {
            "type": "video",
            "originalContentUrl": VIDEO,
            "previewImageUrl": IMG,
            "trackingId": "winter-sale-1",
        },
        {"type": "audio", "originalContentUrl": AUDIO, "duration": 61_000},
        {
            "type": "text",
            "text": "Sale $ today $",
            "emojis": [
                {"index": 5, "productId": EMOJI_ID[0], "emojiId": EMOJI_ID[1]},
                {"index": 13, "productId": EMOJI_ID[0], "emojiId": EMOJI_ID[1]},
            ],
        },
    ]


def test_a_silent_send_says_so_on_the_multicast_and_the_push() -> None:
    messages: list[Message] = [TextMessage("shh")]
    assert json.loads(encode_multicast([USER], messages, True))["notificationDisabled"] is True
    assert json.loads(encode_push(USER, messages, True))["notificationDisabled"] is True
    assert "notificationDisabled" not in json.loads(encode_multicast([USER], messages))
    conforms(messages, silent=True)


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (StickerMessage("", "1"), "messages[0].sticker.package_id"),
        (StickerMessage("1", "a b"), "messages[0].sticker.sticker_id"),
        (VideoMessage("http://x.example/a.mp4", IMG), "messages[0].video.original_content_uri"),
        (VideoMessage(VIDEO, ""), "messages[0].video.preview_image_uri"),
        (VideoMessage(VIDEO, IMG, "no spaces"), "messages[0].video.tracking_id"),
        (AudioMessage("ftp://x.example/a.m4a", 10), "messages[0].audio.original_content_uri"),
        (AudioMessage(AUDIO, 0), "messages[0].audio.duration_ms"),
        (TextMessage("no dollar", (TextEmoji(0, *EMOJI_ID),)), "messages[0].text.emojis[0].index"),
        (TextMessage("$", (TextEmoji(0, "", "001"),)), "messages[0].text.emojis[0].product_id"),
    ],
)
def test_bad_shared_fields_are_named_exactly(message: Message, path: str) -> None:
    assert paths(message) == [path]


def _broken(name: str, change: str, value: Any) -> dict[str, Any]:
    """NATIVE[name] with the dotted `change` set to `value` (a missing key: None deletes)."""
    data = copy.deepcopy(NATIVE[name])
    *parents, last = change.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return data


W = "messages[0].channel_native"


@pytest.mark.parametrize(
    ("name", "change", "value", "path"),
    [
        ("flex", "altText", None, f"{W}.altText"),
        ("flex", "altText", "a" * 1_501, f"{W}.altText"),
        ("flex", "contents.type", "box", f"{W}.contents.type"),
        ("flex", "contents.contents.1.body.contents.0.text", None,
         f"{W}.contents.contents[1].body.contents[0].text"),
        ("flex", "contents.contents.2.body.layout", "diagonal",
         f"{W}.contents.contents[2].body.layout"),
        ("flex", "contents.contents.0.hero.url", "http://x.example/a.png",
         f"{W}.contents.contents[0].hero.url"),
        ("flex", "contents.contents.0.footer.contents.0.action.uri", "javascript:alert(1)",
         f"{W}.contents.contents[0].footer.contents[0].action.uri"),
        ("flex", "contents.contents.0.footer.contents.0.action.label", None,
         f"{W}.contents.contents[0].footer.contents[0].action.label"),
        ("imagemap", "baseSize.width", 1000, f"{W}.baseSize.width"),
        ("imagemap", "baseUrl", "http://x.example/b", f"{W}.baseUrl"),
        ("imagemap", "actions.0.area.x", -1, f"{W}.actions[0].area.x"),
        ("imagemap", "actions.1.text", "a" * 401, f"{W}.actions[1].text"),
        ("imagemap", "actions", [], f"{W}.actions"),
        ("buttons", "altText", "a" * 401, f"{W}.altText"),
        ("buttons", "template.text", "a" * 61, f"{W}.template.text"),
        ("buttons", "template.actions.1.label", "a" * 21, f"{W}.template.actions[1].label"),
        ("buttons", "template.actions.0.type", "richmenuswitch", f"{W}.template.actions[0].type"),
        ("buttons", "template.imageAspectRatio", "round", f"{W}.template.imageAspectRatio"),
        ("confirm", "template.actions", [BUY], f"{W}.template.actions"),
        ("carousel", "template.columns.1.actions", [BUY, BUY], f"{W}.template.columns"),
        ("carousel", "template.columns.2.title", "a" * 41, f"{W}.template.columns[2].title"),
        ("image_carousel", "template.columns.0.imageUrl", None,
         f"{W}.template.columns[0].imageUrl"),
        ("quick_text", "quickReply.items.0.action.label", None,
         f"{W}.quickReply.items[0].action.label"),
        ("quick_text", "emojis.0.index", 3, f"{W}.emojis[0].index"),
        ("quick_text", "type", "coupon", f"{W}.type"),
    ],
)  # fmt: skip
def test_bad_native_fields_are_named_exactly(name: str, change: str, value: Any, path: str) -> None:
    assert paths(native(_broken(name, change, value))) == [path]


def test_native_violations_follow_their_bubble() -> None:
    bad = native(_broken("confirm", "template.text", None))
    assert paths(TextMessage("hi"), SHARED["sticker"], bad) == [
        "messages[2].channel_native.template.text"
    ]


def test_previews_of_native_bubbles_come_from_their_alt_text() -> None:
    assert preview_native(FLEX_CAROUSEL) == "[Card] Winter sale — 3 items"
    assert preview_native(CAROUSEL) == "[Card] Picks — 3 items"
    assert preview_native(BUTTONS) == "[Card] New arrivals"
    assert preview_native(IMAGEMAP) == "[Rich message] Spring banner"
    assert preview_native(QUICK_TEXT) == "Which size? $"


# --- numeric rules at every size


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 16))
def test_a_flex_carousel_holds_1_to_12_bubbles(n: int) -> None:
    data = {**FLEX_CAROUSEL, "contents": {"type": "carousel", "contents": [bubble("x")] * n}}
    found = paths(native(data))
    assert found == ([] if 1 <= n <= 12 else [f"{W}.contents.contents"])
    if not found:
        conforms([native(data)])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 14))
def test_a_template_carousel_holds_1_to_10_columns(n: int) -> None:
    column = CAROUSEL["template"]["columns"][0]  # type: ignore[index]
    data = _broken("carousel", "template.columns", [column] * n)
    assert paths(native(data)) == ([] if 1 <= n <= 10 else [f"{W}.template.columns"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 18))
def test_quick_replies_hold_1_to_13_items(n: int) -> None:
    item = {"type": "action", "action": {"type": "message", "label": "S", "text": "S"}}
    data = _broken("quick_text", "quickReply.items", [item] * n)
    assert paths(native(data)) == ([] if 1 <= n <= 13 else [f"{W}.quickReply.items"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1_600), st.sampled_from(["flex", "imagemap", "buttons"]))
def test_alt_text_lengths(length: int, name: str) -> None:
    most = 400 if name == "buttons" else 1_500
    data = _broken(name, "altText", "a" * length)
    assert paths(native(data)) == ([] if 1 <= length <= most else [f"{W}.altText"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 25))
def test_a_text_holds_at_most_20_emoji(n: int) -> None:
    text = "$" * max(n, 1)
    message = TextMessage(text, tuple(TextEmoji(i, *EMOJI_ID) for i in range(n)))
    assert paths(message) == ([] if n <= 20 else ["messages[0].text.emojis"])


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**40), 2**40))
def test_audio_durations_must_be_positive(duration: int) -> None:
    assert paths(AudioMessage(AUDIO, duration)) == (
        [] if duration > 0 else ["messages[0].audio.duration_ms"]
    )


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=120))
def test_tracking_ids_never_crash_and_valid_ones_conform(tracking: str) -> None:
    message = VideoMessage(VIDEO, IMG, tracking)
    if not paths(message):
        conforms([message])


@settings(max_examples=60, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "altText", "contents", "template", "actions", "text", "layout"]),
        inner, max_size=4),
    max_leaves=12,
))  # fmt: skip
def test_arbitrary_payloads_never_crash_and_what_passes_conforms(payload: Any) -> None:
    data = payload if isinstance(payload, dict) else {"value": payload}
    message = native(data)
    found = validate_messages([message])
    assert all(v.field.startswith(W) for v in found)
    if not found:
        conforms([message])
