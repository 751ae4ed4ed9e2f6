"""Field rules shared by every resource: lengths, printable ids, request ids, and which
characters text may hold.

Names and other text people type (display names, descriptions, contact names) may hold any
letter, mark, symbol, space or emoji, including the invisible characters emoji and words are
made of: the zero-width joiner of emoji sequences (👩‍💻), the zero-width non-joiner, the soft
hyphen, the left-to-right and right-to-left marks, and the tag characters of subdivision flags.
They refuse control characters (ESC, NUL, …), the bidirectional embeddings, overrides and
isolates (U+202A to U+202E, U+2066 to U+2069) that make text display in another order than it is
stored, other invisible format characters, surrogates and line or paragraph separators. A
description may also hold line breaks and tabs.
"""

from __future__ import annotations

import unicodedata

from broadcaster.domain.errors import Violations

MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION = 1024
MAX_EXTERNAL_ID = 128
MAX_CUSTOMER_ID = 128
MAX_REQUEST_ID = 128
MAX_URI = 2000
# Recipient limit: the largest max_recipients a send takes (beyond any channel's audience).
MAX_RECIPIENT_LIMIT = 100_000_000


# Format characters (category Cf) that text legitimately needs; every other one is refused.
ALLOWED_FORMAT = frozenset(
    "\u00ad"  # soft hyphen
    "\u200c\u200d"  # zero-width non-joiner and joiner (emoji sequences)
    "\u200e\u200f\u061c"  # left-to-right, right-to-left and Arabic letter marks
) | frozenset(chr(c) for c in range(0xE0020, 0xE0080))  # tags (subdivision flags)
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_LINE_BREAKS = frozenset("\n\t")


def is_allowed_char(c: str, *, multiline: bool = False) -> bool:
    """Whether text people type may hold `c` (see the module's docstring)."""
    if c in ALLOWED_FORMAT or (multiline and c in _LINE_BREAKS):
        return True
    return unicodedata.category(c) not in _REFUSED_CATEGORIES


def is_clean_text(value: str, *, multiline: bool = False) -> bool:
    return all(is_allowed_char(c, multiline=multiline) for c in value)


def is_blank(value: str) -> bool:
    """No character that shows: only spaces and invisible format characters."""
    return all(c.isspace() or c in ALLOWED_FORMAT for c in value)


def is_printable_id(value: str, max_len: int) -> bool:
    """1..max_len characters, none of them whitespace or control characters."""
    return 0 < len(value) <= max_len and all(c.isprintable() and not c.isspace() for c in value)


def check_display_name(v: Violations, value: str, field: str) -> None:
    if is_blank(value):
        v.add(field, "is required and must not be blank")
    elif len(value) > MAX_DISPLAY_NAME:
        v.add(field, f"must be at most {MAX_DISPLAY_NAME} characters, got {len(value)}")
    elif not is_clean_text(value):
        v.add(field, "must not contain control characters or bidirectional overrides")


def check_optional_text(
    v: Violations, value: str, field: str, max_len: int, *, multiline: bool = False
) -> None:
    """Text that may be empty: a contact's name, a description (`multiline`), a URI."""
    if len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters, got {len(value)}")
    elif not is_clean_text(value, multiline=multiline):
        v.add(field, "must not contain control characters or bidirectional overrides")


def check_request_id(v: Violations, value: str, field: str = "request_id") -> None:
    if value and not is_printable_id(value, MAX_REQUEST_ID):
        v.add(field, f"must be 1 to {MAX_REQUEST_ID} printable characters without spaces")


def check_recipient_limit(v: Violations, max_recipients: int | None, field: str) -> None:
    """Recipient limit: a number of recipients (None: the remaining quota, always valid)."""
    if max_recipients is not None and not 1 <= max_recipients <= MAX_RECIPIENT_LIMIT:
        v.add(
            f"{field}.max_recipients",
            f"must be 1 to {MAX_RECIPIENT_LIMIT:,}, got {max_recipients}",
        )


def check_customer_id(v: Violations, value: str, field: str) -> None:
    if not is_printable_id(value, MAX_CUSTOMER_ID):
        v.add(field, f"must be 1 to {MAX_CUSTOMER_ID} printable characters without spaces")
