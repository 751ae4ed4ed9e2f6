"""LINE's message rules and the LINE JSON of a broadcast's bubbles.

From messaging-api.yml and LINE's message-object reference: a request carries 1 to 5 message
objects; a text message has 1 to 5,000 characters counted in UTF-16 code units (so most emoji
count 2) and at most 20 LINE emoji, each at the index of a `$`; an image or a video has an
`originalContentUrl` and a `previewImageUrl`, each an HTTPS URL of at most 2,000 characters (a
video's `trackingId`: at most 100 characters of letters, digits and `-.=,+*()%$&;:@{}!?<>[]`);
an audio message an HTTPS `originalContentUrl` and a `duration` in milliseconds; a sticker a
`packageId` and a `stickerId`. Channel-native bubbles (imagemap, template, flex) are checked by
`native`. Each violation names the field as the API does (`messages[2].text`,
`messages[0].sticker.package_id`, `messages[1].image.original_content_uri`), so the merchant
sees which bubble to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from broadcaster.channels import (
    AudioMessage,
    ChannelNativeMessage,
    FieldViolation,
    ImageMessage,
    Message,
    StickerMessage,
    TextEmoji,
    TextMessage,
    VideoMessage,
    kind_of,
)
from broadcaster_line import native

MAX_MESSAGES = 5
MAX_TEXT_UTF16 = 5_000
MAX_URL_LENGTH = 2_000
MAX_EMOJIS = native.MAX_EMOJIS
MAX_TRACKING_ID = 100
MAX_STICKER_ID = 100
_TRACKING_ID = re.compile(r"[A-Za-z0-9\-.=,+*()%$&;:@{}!?<>\[\]]+")
# A URL as LINE takes it: printable ASCII only; anything else must be percent-encoded.
_URL_CHARS = re.compile(r"[!-~]+")


def utf16_length(text: str) -> int:
    """Length as LINE counts it: characters outside the BMP (most emoji) count twice."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _is_encodable(text: str) -> bool:
    """False for text with unpaired surrogates, which no JSON encoder can send as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_problem(text: str) -> str | None:
    if not text:
        return "must not be empty"
    if not _is_encodable(text):
        return "contains characters that are not valid Unicode (unpaired surrogates)"
    length = utf16_length(text)
    if length > MAX_TEXT_UTF16:
        return (
            f"must be at most {MAX_TEXT_UTF16:,} characters as LINE counts them (UTF-16 code "
            f"units; most emoji count as 2); this text has {length:,}"
        )
    return None


def _url_problem(url: str) -> str | None:
    if not url:
        return "must be an HTTPS URL"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH:,} characters; this URL has {len(url):,}"
    if not url.startswith("https://"):
        return "must be an HTTPS URL (starting with https://)"
    if not _URL_CHARS.fullmatch(url):
        return "must not contain spaces or non-ASCII characters; percent-encode them"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return "must be a well-formed HTTPS URL"
    if not host:
        return "must be an HTTPS URL with a host name"
    return None


def _media(where: str, fields: tuple[tuple[str, str], ...]) -> list[FieldViolation]:
    out = []
    for name, url in fields:
        problem = _url_problem(url)
        if problem:
            out.append(FieldViolation(f"{where}.{name}", problem))
    return out


def _id_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > MAX_STICKER_ID or not _URL_CHARS.fullmatch(value):
        return f"must be at most {MAX_STICKER_ID} printable ASCII characters"
    return None


def _message_violations(message: Message, where: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    match message:
        case TextMessage(text, emojis):
            problem = _text_problem(text)
            if problem:
                out.append(FieldViolation(f"{where}.text", problem))
            if emojis:
                found = native.check_emojis(text, _line_emojis(emojis), f"{where}.text.emojis")
                out += [FieldViolation(_api_names(v.field), v.description) for v in found]
        case ImageMessage(original, preview):
            fields = (("original_content_uri", original), ("preview_image_uri", preview))
            out += _media(f"{where}.image", fields)
        case VideoMessage(original, preview, tracking):
            fields = (("original_content_uri", original), ("preview_image_uri", preview))
            out += _media(f"{where}.video", fields)
            if tracking and (
                len(tracking) > MAX_TRACKING_ID or not _TRACKING_ID.fullmatch(tracking)
            ):
                out.append(
                    FieldViolation(
                        f"{where}.video.tracking_id",
                        f"must be at most {MAX_TRACKING_ID} characters of letters, digits and "
                        "-.=,+*()%$&;:@{}!?<>[]",
                    )
                )
        case AudioMessage(original, duration):
            out += _media(f"{where}.audio", (("original_content_uri", original),))
            if duration <= 0:
                out.append(FieldViolation(f"{where}.audio.duration_ms", "must be more than 0 (ms)"))
        case StickerMessage(package, sticker):
            for name, value in (("package_id", package), ("sticker_id", sticker)):
                problem = _id_problem(value)
                if problem:
                    out.append(FieldViolation(f"{where}.sticker.{name}", problem))
        case ChannelNativeMessage():
            out += native.validate_native(message.data(), f"{where}.channel_native")
        case _:
            out.append(FieldViolation(where, "LINE does not take this kind of message"))
    return out


def validate_messages(messages: Sequence[Message]) -> list[FieldViolation]:
    """Every way `messages` breaks LINE's rules; empty when LINE would accept them."""
    violations: list[FieldViolation] = []
    if not 1 <= len(messages) <= MAX_MESSAGES:
        violations.append(
            FieldViolation(
                "messages",
                f"a LINE broadcast has 1 to {MAX_MESSAGES} messages; got {len(messages)}",
            )
        )
    for i, message in enumerate(messages):
        violations += _message_violations(message, f"messages[{i}]")
    return violations


def _line_emojis(emojis: Sequence[TextEmoji]) -> list[dict[str, Any]]:
    return [{"index": e.index, "productId": e.product_id, "emojiId": e.emoji_id} for e in emojis]


# LINE's names of the shared kinds' fields, and the API's (after `messages[i].`).
_API_FIELDS: dict[str, dict[str, str]] = {
    "text": {"text": "text", "emojis": "text.emojis"},
    "image": {
        "originalContentUrl": "image.original_content_uri",
        "previewImageUrl": "image.preview_image_uri",
    },
    "video": {
        "originalContentUrl": "video.original_content_uri",
        "previewImageUrl": "video.preview_image_uri",
        "trackingId": "video.tracking_id",
    },
    "audio": {"originalContentUrl": "audio.original_content_uri", "duration": "audio.duration_ms"},
    "sticker": {"packageId": "sticker.package_id", "stickerId": "sticker.sticker_id"},
}
_LINE_PROPERTY = re.compile(r"messages\[(\d+)\](?:\.(\w+))?(.*)")


def _api_names(path: str) -> str:
    """An emoji's fields under the API's names (`product_id`), not LINE's."""
    return path.replace(".productId", ".product_id").replace(".emojiId", ".emoji_id")


def api_path(prop: str, messages: Sequence[Message]) -> str:
    """The API's path of a property LINE names (`messages[1].originalContentUrl` is
    `messages[1].image.original_content_uri`; inside a channel-native bubble LINE's own names
    stay, after `channel_native`)."""
    found = _LINE_PROPERTY.fullmatch(prop)
    if found is None or int(found.group(1)) >= len(messages):
        return "messages"
    where = f"messages[{found.group(1)}]"
    key, rest = found.group(2), found.group(3)
    message = messages[int(found.group(1))]
    if isinstance(message, ChannelNativeMessage):
        return f"{where}.channel_native" + (f".{key}{rest}" if key else rest)
    kind = kind_of(message)
    mapped = _API_FIELDS.get(kind, {}).get(key or "")
    if mapped is None:
        return f"{where}.{kind}"
    return f"{where}.{mapped}{_api_names(rest)}"


def violations_from_line(
    details: Sequence[tuple[str, str]], message: str, messages: Sequence[Message]
) -> list[FieldViolation]:
    """LINE's answer to a validation request (`details`: its (property, message) pairs) as
    field violations of the API's paths."""
    if not details:
        return [FieldViolation("messages", f"LINE refuses the messages: {message or 'no reason'}")]
    return [
        FieldViolation(api_path(prop, messages), f"LINE refuses it: {text or 'no reason'}")
        for prop, text in details
    ]


def to_line_message(message: Message) -> dict[str, Any]:
    """One bubble as a LINE message object."""
    match message:
        case TextMessage(text, emojis):
            out: dict[str, Any] = {"type": "text", "text": text}
            if emojis:
                out["emojis"] = _line_emojis(emojis)
            return out
        case ImageMessage(original, preview):
            return {"type": "image", "originalContentUrl": original, "previewImageUrl": preview}
        case VideoMessage(original, preview, tracking):
            out = {"type": "video", "originalContentUrl": original, "previewImageUrl": preview}
            if tracking:
                out["trackingId"] = tracking
            return out
        case AudioMessage(original, duration):
            return {"type": "audio", "originalContentUrl": original, "duration": duration}
        case StickerMessage(package, sticker):
            return {"type": "sticker", "packageId": package, "stickerId": sticker}
        case ChannelNativeMessage():
            return message.data()
    raise TypeError(f"LINE cannot send {type(message).__name__}")


def to_line_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [to_line_message(m) for m in messages]
