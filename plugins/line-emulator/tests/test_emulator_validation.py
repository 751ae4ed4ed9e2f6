"""Property tests of the request rules, independent of HTTP."""

from __future__ import annotations

from typing import Any

from broadcaster_line_emulator.ids import is_user_id
from broadcaster_line_emulator.validation import (
    utf16_length,
    validate_messages,
    validate_multicast,
)
from hypothesis import given
from hypothesis import strategies as st

user_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda h: "U" + h)
not_user_ids = st.text(max_size=40).filter(lambda s: not is_user_id(s))


@given(st.text(max_size=6_000))
def test_text_is_accepted_exactly_when_1_to_5000_utf16_units(value: str) -> None:
    errors = validate_messages({"messages": [{"type": "text", "text": value}]})
    units = len(value.encode("utf-16-le")) // 2
    assert (errors == []) == (1 <= units <= 5_000)
    assert utf16_length(value) == units


@given(st.integers(min_value=2_400, max_value=2_600))
def test_emoji_count_twice(count: int) -> None:
    errors = validate_messages({"messages": [{"type": "text", "text": "\U0001f389" * count}]})
    assert (errors == []) == (count * 2 <= 5_000)


@given(st.lists(user_ids, min_size=1, max_size=500), st.integers(min_value=1, max_value=5))
def test_well_formed_multicasts_pass(to: list[str], messages: int) -> None:
    check = validate_multicast({"to": to, "messages": [{"type": "text", "text": "x"}] * messages})
    assert check.errors == [] and check.invalid_recipients == []


@given(st.lists(st.one_of(user_ids, not_user_ids), min_size=1, max_size=60))
def test_every_malformed_recipient_is_named(to: list[str]) -> None:
    check = validate_multicast({"to": to, "messages": [{"type": "text", "text": "x"}]})
    bad = [i for i, user in enumerate(to) if not is_user_id(user)]
    assert check.invalid_recipients == bad
    assert [e.property for e in check.errors] == [f"to[{i}]" for i in bad]


@given(st.integers(min_value=0, max_value=12))
def test_message_count_must_be_1_to_5(count: int) -> None:
    errors = validate_messages({"messages": [{"type": "text", "text": "x"}] * count})
    assert (errors == []) == (1 <= count <= 5)


@given(
    st.sampled_from(["https://", "http://", "ftp://", "//", ""]),
    st.integers(min_value=0, max_value=2_100),
)
def test_image_urls_must_be_https_and_at_most_2000_characters(scheme: str, length: int) -> None:
    url = scheme + "a" * length
    message: dict[str, Any] = {
        "type": "image",
        "originalContentUrl": url,
        "previewImageUrl": "https://cdn.example.com/p.jpg",
    }
    errors = validate_messages({"messages": [message]})
    valid = scheme == "https://" and length > 0 and len(url) <= 2_000
    assert (errors == []) == valid
    assert all(e.property == "messages[0].originalContentUrl" for e in errors)


def test_sender_and_aggregation_units() -> None:
    message = {"type": "text", "text": "x", "sender": {"name": "N" * 21, "iconUrl": "ftp://x"}}
    check = validate_multicast(
        {
            "to": ["U" + "0" * 32],
            "messages": [message],
            "customAggregationUnits": ["ok_unit", "too-many"],
            "notificationDisabled": "yes",
        }
    )
    assert sorted(e.property for e in check.errors) == [
        "customAggregationUnits",
        "messages[0].sender.iconUrl",
        "messages[0].sender.name",
        "notificationDisabled",
    ]


# --- stickers, videos, audio, emoji, imagemap, template, flex, quick replies

IMG = "https://cdn.example.com/a.png"
ACTION = {"type": "message", "label": "Yes", "text": "yes"}
BUBBLE = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": []}}
VALID: dict[str, dict[str, Any]] = {
    "sticker": {"type": "sticker", "packageId": "446", "stickerId": "1988"},
    "video": {
        "type": "video",
        "originalContentUrl": "https://cdn.example.com/a.mp4",
        "previewImageUrl": IMG,
        "trackingId": "sale-1",
    },
    "audio": {
        "type": "audio",
        "originalContentUrl": "https://cdn.example.com/a.m4a",
        "duration": 1,
    },
    "emoji": {
        "type": "text",
        "text": "$ sale",
        "emojis": [{"index": 0, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}],
    },
    "imagemap": {
        "type": "imagemap",
        "baseUrl": "https://cdn.example.com/rich",
        "altText": "Banner",
        "baseSize": {"width": 1040, "height": 520},
        "actions": [
            {
                "type": "uri",
                "linkUri": "https://x.example/",
                "area": {"x": 0, "y": 0, "width": 1040, "height": 520},
            },
        ],
    },
    "buttons": {
        "type": "template",
        "altText": "Pick",
        "template": {"type": "buttons", "text": "Pick one", "actions": [ACTION]},
    },
    "confirm": {
        "type": "template",
        "altText": "Sure?",
        "template": {"type": "confirm", "text": "Sure?", "actions": [ACTION, ACTION]},
    },
    "carousel": {
        "type": "template",
        "altText": "Picks",
        "template": {"type": "carousel", "columns": [{"text": "a", "actions": [ACTION]}]},
    },
    "image_carousel": {
        "type": "template",
        "altText": "Looks",
        "template": {"type": "image_carousel", "columns": [{"imageUrl": IMG, "action": ACTION}]},
    },
    "flex": {"type": "flex", "altText": "Card", "contents": BUBBLE},
    "flex_carousel": {
        "type": "flex",
        "altText": "Cards",
        "contents": {"type": "carousel", "contents": [BUBBLE, BUBBLE]},
    },
    "quick_reply": {
        "type": "text",
        "text": "Size?",
        "quickReply": {"items": [{"type": "action", "action": ACTION}]},
    },
}


def _one(message: dict[str, Any]) -> list[str]:
    return [e.property for e in validate_messages({"messages": [message]})]


def test_every_kind_in_its_valid_shape_is_accepted() -> None:
    for name, message in VALID.items():
        assert _one(message) == [], name


def test_invalid_shapes_are_refused_naming_the_property() -> None:
    def broken(name: str, **changes: Any) -> dict[str, Any]:
        return {**VALID[name], **changes}

    template = VALID["buttons"]["template"]
    assert _one(broken("sticker", stickerId=1988)) == ["messages[0].stickerId"]
    assert _one(broken("video", trackingId="a b")) == ["messages[0].trackingId"]
    assert _one(broken("audio", duration="1")) == ["messages[0].duration"]
    assert _one(broken("emoji", text="no placeholder")) == ["messages[0].emojis[0].index"]
    assert _one(broken("imagemap", baseSize={"width": 1000, "height": 520})) == [
        "messages[0].baseSize.width"
    ]
    assert _one(broken("imagemap", actions=[])) == ["messages[0].actions"]
    assert _one(broken("buttons", altText="a" * 401)) == ["messages[0].altText"]
    assert _one(broken("buttons", template={**template, "type": "list"})) == [
        "messages[0].template.type"
    ]
    assert _one(broken("buttons", template={**template, "actions": [ACTION] * 5})) == [
        "messages[0].template.actions"
    ]
    assert _one(broken("confirm", template={"type": "confirm", "text": "?", "actions": []})) == [
        "messages[0].template.actions"
    ]
    assert _one(broken("flex", contents={"type": "box"})) == ["messages[0].contents.type"]
    assert _one(broken("quick_reply", quickReply={"items": []})) == ["messages[0].quickReply.items"]


@given(st.integers(min_value=0, max_value=16))
def test_a_flex_carousel_holds_1_to_12_bubbles(n: int) -> None:
    message = {**VALID["flex"], "contents": {"type": "carousel", "contents": [BUBBLE] * n}}
    assert (_one(message) == []) == (1 <= n <= 12)


@given(st.integers(min_value=0, max_value=14))
def test_a_template_carousel_holds_1_to_10_columns(n: int) -> None:
    column = {"text": "a", "actions": [ACTION]}
    message = {**VALID["carousel"], "template": {"type": "carousel", "columns": [column] * n}}
    assert (_one(message) == []) == (1 <= n <= 10)


@given(st.integers(min_value=0, max_value=18))
def test_a_quick_reply_holds_1_to_13_items(n: int) -> None:
    item = {"type": "action", "action": ACTION}
    message = {**VALID["quick_reply"], "quickReply": {"items": [item] * n}}
    assert (_one(message) == []) == (1 <= n <= 13)


@given(st.integers(min_value=0, max_value=25))
def test_a_text_holds_at_most_20_emoji(n: int) -> None:
    emoji = {"productId": "p", "emojiId": "001"}
    message = {
        "type": "text",
        "text": "$" * max(n, 1),
        "emojis": [{"index": i, **emoji} for i in range(n)],
    }
    assert (_one(message) == []) == (n <= 20)


@given(st.integers(min_value=0, max_value=500), st.sampled_from(["template", "flex"]))
def test_alt_text_limits(length: int, kind: str) -> None:
    name = "buttons" if kind == "template" else "flex"
    most = 400 if kind == "template" else 1_500
    message = {**VALID[name], "altText": "a" * length}
    assert (_one(message) == []) == (1 <= length <= most)
