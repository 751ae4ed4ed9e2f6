"""Page sizes and opaque page tokens (AIP-158).

A token carries the last key of the previous page and a fingerprint of the query it belongs to,
so a token reused with different filters is refused instead of silently skipping rows. It is
signed (HMAC-SHA256 with a key every replica shares), so a caller cannot make one up: a token
that is not exactly as the service issued it is refused with INVALID_PAGE_TOKEN before any part
of it is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.reasons import Reason

# The longest token issued is well under this (a 26-character id, an event position or a
# customer id of at most 128 characters, and a 16-character fingerprint); anything longer is
# refused unread.
MAX_TOKEN = 2048
MAX_AFTER = 128
_MAC_BYTES = 16
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Page:
    """What a list call asks for: at most `size` items after `after` (exclusive)."""

    size: int
    after: str | None

    def after_number(self) -> int | None:
        """`after` as a non-negative 64-bit integer (a delivery's seq), or None on the first
        page."""
        if self.after is None:
            return None
        if not (self.after.isascii() and self.after.isdigit()) or int(self.after) > INT64_MAX:
            raise _invalid("is not a token this service issued")
        return int(self.after)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _invalid(description: str) -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation("page_token", description)], reason=Reason.INVALID_PAGE_TOKEN
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


class PageTokens:
    """Issues and checks the page tokens of every list call with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a page token key needs 16 bytes or more")
        self._key = key

    @classmethod
    def random(cls) -> PageTokens:
        """A key of this process only: tokens do not outlive it (tests, tools)."""
        return cls(os.urandom(32))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, after: str, query: str) -> str:
        payload = json.dumps({"a": after, "q": query}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, token: str, query: str) -> str:
        """The `after` key a token carries; InvalidArgument (INVALID_PAGE_TOKEN) unless this
        service issued it for `query`."""
        body, _, mac = token.partition(".")
        try:
            if len(token) > MAX_TOKEN:
                raise ValueError("too long")
            payload = _unb64(body)
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                raise ValueError("forged")
            data = json.loads(payload)
        except (ValueError, UnicodeError, binascii.Error):
            raise _invalid("is not a token this service issued") from None
        after = data.get("a") if isinstance(data, dict) else None
        if not (isinstance(after, str) and 0 < len(after) <= MAX_AFTER and after.isprintable()):
            raise _invalid("is not a token this service issued")
        if data.get("q") != query:
            raise _invalid("belongs to a list call with other parameters")
        return after

    def request(
        self, page_size: int, page_token: str, query: str, *, default: int, maximum: int
    ) -> Page:
        """Validate the paging fields of a list request; `query` fingerprints its other
        fields."""
        if page_size < 0:
            raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
        size = default if page_size == 0 else min(page_size, maximum)
        after = self.decode(page_token, query) if page_token else None
        return Page(size=size, after=after)

    def next(self, keys: list[str], page: Page, query: str) -> str:
        """The token for the page after `keys` (fetched with `page.size + 1` rows), or ''."""
        if len(keys) <= page.size:
            return ""
        return self.encode(keys[page.size - 1], query)
