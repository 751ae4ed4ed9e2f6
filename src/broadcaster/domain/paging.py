"""Page sizes and opaque page tokens (AIP-158).

A token carries the last key of the previous page and a fingerprint of the query it belongs to,
so a token reused with different filters is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.reasons import Reason


@dataclass(frozen=True, slots=True)
class Page:
    """What a list call asks for: at most `size` items after `after` (exclusive)."""

    size: int
    after: str | None


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode_token(after: str, query: str) -> str:
    raw = json.dumps({"a": after, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, query: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("a"), str):
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token this service issued")],
            reason=Reason.INVALID_PAGE_TOKEN,
        )
    if data.get("q") != query:
        raise InvalidArgument(
            [FieldViolation("page_token", "belongs to a list call with other parameters")],
            reason=Reason.INVALID_PAGE_TOKEN,
        )
    return str(data["a"])


def page_request(
    page_size: int, page_token: str, query: str, *, default: int, maximum: int
) -> Page:
    """Validate the paging fields of a list request; `query` fingerprints its other fields."""
    if page_size < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    size = default if page_size == 0 else min(page_size, maximum)
    after = _decode_token(page_token, query) if page_token else None
    return Page(size=size, after=after)


def next_token(keys: list[str], page: Page, query: str) -> str:
    """The token for the page after `keys` (fetched with `page.size + 1` rows), or ''."""
    if len(keys) <= page.size:
        return ""
    return encode_token(keys[page.size - 1], query)
