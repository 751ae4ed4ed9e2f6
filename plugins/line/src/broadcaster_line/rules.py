"""LINE's message rules and the LINE JSON of a broadcast's bubbles.

From messaging-api.yml and LINE's message-object reference: a request carries 1 to 5 message
objects; a text message has 1 to 5,000 characters counted in UTF-16 code units (so most emoji
count 2); an image message has an `originalContentUrl` and a `previewImageUrl`, each an HTTPS URL
of at most 2,000 characters. Each violation names the field as the API does
(`messages[2].text`), so the merchant sees which bubble to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from broadcaster.channels import FieldViolation, ImageMessage, Message, TextMessage

MAX_MESSAGES = 5
MAX_TEXT_UTF16 = 5_000
MAX_URL_LENGTH = 2_000
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
        where = f"messages[{i}]"
        if isinstance(message, TextMessage):
            problem = _text_problem(message.text)
            if problem:
                violations.append(FieldViolation(f"{where}.text", problem))
        elif isinstance(message, ImageMessage):
            for name, url in (
                ("original_content_url", message.original_content_url),
                ("preview_image_url", message.preview_image_url),
            ):
                problem = _url_problem(url)
                if problem:
                    violations.append(FieldViolation(f"{where}.{name}", problem))
        else:
            violations.append(FieldViolation(where, "LINE takes text and image messages only"))
    return violations


def to_line_message(message: Message) -> dict[str, Any]:
    """One bubble as a LINE message object."""
    if isinstance(message, TextMessage):
        return {"type": "text", "text": message.text}
    if isinstance(message, ImageMessage):
        return {
            "type": "image",
            "originalContentUrl": message.original_content_url,
            "previewImageUrl": message.preview_image_url,
        }
    raise TypeError(f"LINE cannot send {type(message).__name__}")


def to_line_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [to_line_message(m) for m in messages]
