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
