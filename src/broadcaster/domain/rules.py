"""Field rules shared by every resource: lengths, printable ids, request ids."""

from __future__ import annotations

from broadcaster.domain.errors import Violations

MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION = 1024
MAX_EXTERNAL_ID = 128
MAX_CUSTOMER_ID = 128
MAX_REQUEST_ID = 128
MAX_URI = 2000


def is_printable_id(value: str, max_len: int) -> bool:
    """1..max_len characters, none of them whitespace or control characters."""
    return 0 < len(value) <= max_len and all(c.isprintable() and not c.isspace() for c in value)


def check_display_name(v: Violations, value: str, field: str) -> None:
    if not value.strip():
        v.add(field, "is required and must not be blank")
    elif len(value) > MAX_DISPLAY_NAME:
        v.add(field, f"must be at most {MAX_DISPLAY_NAME} characters, got {len(value)}")
    elif not value.isprintable():
        v.add(field, "must not contain control characters")


def check_optional_text(v: Violations, value: str, field: str, max_len: int) -> None:
    if len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters, got {len(value)}")
    elif "\x00" in value:
        v.add(field, "must not contain NUL characters")


def check_request_id(v: Violations, value: str, field: str = "request_id") -> None:
    if value and not is_printable_id(value, MAX_REQUEST_ID):
        v.add(field, f"must be 1 to {MAX_REQUEST_ID} printable characters without spaces")


def check_customer_id(v: Violations, value: str, field: str) -> None:
    if not is_printable_id(value, MAX_CUSTOMER_ID):
        v.add(field, f"must be 1 to {MAX_CUSTOMER_ID} printable characters without spaces")
