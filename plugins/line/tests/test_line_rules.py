"""LINE's message rules: counts, UTF-16 lengths, HTTPS URLs, field paths, and the LINE JSON."""

from __future__ import annotations

import json

import pytest
from broadcaster_line.rules import (
    to_line_messages,
    utf16_length,
    validate_messages,
)
from broadcaster_line.sending import encode_multicast
from broadcaster_line_emulator.conformance import check_request
from broadcaster_line_emulator.validation import validate_messages as emulator_validate
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.channels import FieldViolation, ImageMessage, Message, TextMessage

EMOJI = "\U0001f600"  # 😀, outside the BMP: two UTF-16 code units
IMAGE = "https://cdn.example.com/img/a.png"
PREVIEW = "https://cdn.example.com/img/a-preview.png"
USER = "U" + "a" * 32
AUTH = {"Authorization": "Bearer token", "Content-Type": "application/json"}


def fields(messages: list[Message]) -> list[str]:
    return [v.field for v in validate_messages(messages)]


def test_utf16_length_counts_characters_outside_the_bmp_twice() -> None:
    assert utf16_length("abc") == 3
    assert utf16_length(EMOJI) == 2
    assert utf16_length("ไทย日本") == 5  # BMP scripts count one each
    assert utf16_length("👨‍👩‍👧") == 8  # three emoji (2 each) and two joiners


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("a" * 5_000, True),
        ("a" * 5_001, False),
        (EMOJI * 2_500, True),
        (EMOJI * 2_501, False),
        ("a" * 4_999 + EMOJI, False),  # 5,000 characters, 5,001 code units
        ("a" * 4_998 + EMOJI, True),
        ("", False),
    ],
)
def test_text_length_boundaries(text: str, ok: bool) -> None:
    assert fields([TextMessage(text)]) == ([] if ok else ["messages[0].text"])


def test_too_long_text_says_how_long_it_is() -> None:
    [violation] = validate_messages([TextMessage(EMOJI * 2_501)])

    assert "5,002" in violation.description and "5,000" in violation.description


@pytest.mark.parametrize("count", [0, 6, 10])
def test_one_to_five_messages(count: int) -> None:
    assert fields([TextMessage("hi")] * count) == ["messages"]


@pytest.mark.parametrize("count", [1, 5])
def test_one_and_five_messages_are_fine(count: int) -> None:
    assert fields([TextMessage("hi")] * count) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/a.png",
        "https://",
        "https:///a.png",
        "ftp://cdn.example.com/a.png",
        "HTTPS://cdn.example.com/a.png",
        "https://cdn.example.com/a b.png",
        "https://cdn.example.com/画像.png",
        "https://[::1/a.png",
        "https://cdn.example.com:99999/a.png",
        "//cdn.example.com/a.png",
        "",
        "https://cdn.example.com/" + "a" * (2_000 - 24 + 1),
    ],
)
def test_image_urls_must_be_well_formed_https(url: str) -> None:
    assert fields([ImageMessage(url, PREVIEW)]) == ["messages[0].image.original_content_uri"]
    assert fields([ImageMessage(IMAGE, url)]) == ["messages[0].image.preview_image_uri"]


def test_a_2000_character_https_url_is_fine() -> None:
    url = "https://cdn.example.com/" + "a" * (2_000 - 24)
    assert len(url) == 2_000

    assert fields([ImageMessage(url, url)]) == []


def test_every_bad_field_is_named_by_position() -> None:
    violations = validate_messages(
        [
            TextMessage("fine"),
            ImageMessage("http://x.example/a.png", "http://x.example/b.png"),
            TextMessage(""),
        ]
    )

    assert [v.field for v in violations] == [
        "messages[1].image.original_content_uri",
        "messages[1].image.preview_image_uri",
        "messages[2].text",
    ]
    assert all(isinstance(v, FieldViolation) and v.description for v in violations)


def test_line_json_of_text_and_image_messages() -> None:
    assert to_line_messages([TextMessage("Hi 😀"), ImageMessage(IMAGE, PREVIEW)]) == [
        {"type": "text", "text": "Hi 😀"},
        {"type": "image", "originalContentUrl": IMAGE, "previewImageUrl": PREVIEW},
    ]


def test_the_multicast_body_is_json_and_follows_the_spec() -> None:
    messages: list[Message] = [TextMessage("Sale — 50% off 😀"), ImageMessage(IMAGE, PREVIEW)]

    body = encode_multicast([USER, "U" + "b" * 32], messages)

    assert json.loads(body) == {
        "to": [USER, "U" + "b" * 32],
        "messages": to_line_messages(messages),
    }
    assert check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body) == []


# Text from every plane, surrogates included (Python strings can hold unpaired ones).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=60) | st.builds(
    lambda unit, n: unit * n, st.sampled_from(["a", EMOJI, "é", "\ud800"]), st.integers(0, 5_010)
)


@given(any_text)
def test_arbitrary_text_never_crashes_and_agrees_with_line(text: str) -> None:
    violations = validate_messages([TextMessage(text)])

    assert all(v.field == "messages[0].text" for v in violations)
    encodable = all(not 0xD800 <= ord(c) <= 0xDFFF for c in text)
    if encodable:
        # The emulator implements LINE's own check; we must agree with it exactly.
        line_errors = emulator_validate({"messages": to_line_messages([TextMessage(text)])})
        assert bool(violations) == bool(line_errors)
        assert bool(violations) == (not 1 <= utf16_length(text) <= 5_000)
    else:
        assert violations  # unpaired surrogates cannot be sent as UTF-8


@given(st.text(max_size=80), st.text(max_size=80))
def test_arbitrary_urls_never_crash_and_are_never_laxer_than_line(a: str, b: str) -> None:
    for url in (a, "https://" + a, "https://" + a + "/" + b):
        violations = validate_messages([ImageMessage(url, PREVIEW)])
        line_errors = emulator_validate(
            {"messages": to_line_messages([ImageMessage(url, PREVIEW)])}
        )
        if not violations:
            assert not line_errors, url


@settings(max_examples=15, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5))
def test_valid_messages_always_make_a_spec_conforming_request(texts: list[str]) -> None:
    messages: list[Message] = [TextMessage(t) for t in texts]
    if validate_messages(messages):
        return  # e.g. unpaired surrogates

    body = encode_multicast([USER], messages)

    assert check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body) == []
    assert [m["text"] for m in json.loads(body)["messages"]] == texts


@given(st.lists(st.one_of(st.from_regex(r"U[0-9a-f]{32}", fullmatch=True), st.text()), max_size=20))
def test_recipient_ids_are_written_as_json_whatever_they_hold(ids: list[str]) -> None:
    """The multicast body names the recipients exactly, with or without escaping."""
    body = json.loads(encode_multicast(ids, (TextMessage("hi"),)))
    assert body["to"] == ids
