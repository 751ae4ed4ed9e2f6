from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain import rules
from broadcaster.domain.errors import Violations

BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
REFUSED = ["\x1b", "\x00", "\x7f", "\x85", "\ufeff", "\u2028", "\u2060", *BIDI_CONTROLS]
EMOJI = [
    "👩\u200d💻",
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈",
    "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "❤️\u200d🔥",
]


def _clean(value: str, multiline: bool = False) -> bool:
    """The rule, spelled out independently: which characters text may hold."""
    for c in value:
        if multiline and c in "\n\t":
            continue
        if c in "\u00ad\u200c\u200d\u200e\u200f\u061c" or 0xE0020 <= ord(c) <= 0xE007F:
            continue
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return False
    return True


@given(st.text(max_size=400))
def test_display_name_rule(value: str) -> None:
    v = Violations()
    rules.check_display_name(v, value, "f")
    visible = any(not c.isspace() and c not in rules.ALLOWED_FORMAT for c in value)
    ok = visible and len(value) <= 256 and _clean(value)
    assert (not v.items) == ok
    assert all(i.field == "f" for i in v.items)


@given(st.lists(st.sampled_from(EMOJI), min_size=1, max_size=5), st.text("abcé ", max_size=10))
def test_names_accept_emoji_sequences_and_soft_hyphens(emoji: list[str], word: str) -> None:
    for value in ("".join(emoji) + word, f"Sale{word}\u00adprice " + " ".join(emoji)):
        v = Violations()
        rules.check_display_name(v, value, "f")
        rules.check_optional_text(v, value, "g", 1024)
        assert not v.items


@given(st.text(max_size=30), st.sampled_from(REFUSED), st.text(max_size=30))
def test_names_and_descriptions_refuse_controls_and_bidi_overrides(
    before: str, bad: str, after: str
) -> None:
    value = f"x{before}{bad}{after}"
    for check in (
        lambda v: rules.check_display_name(v, value, "f"),
        lambda v: rules.check_optional_text(v, value, "f", 1024),
        lambda v: rules.check_optional_text(v, value, "f", 1024, multiline=True),
    ):
        v = Violations()
        check(v)
        assert [i.field for i in v.items] == ["f"]


@given(st.text(max_size=200))
def test_descriptions_may_also_hold_line_breaks(value: str) -> None:
    v = Violations()
    rules.check_optional_text(v, value, "f", 1024, multiline=True)
    assert (not v.items) == _clean(value, multiline=True)


@pytest.mark.parametrize("blank", ["", "   ", "\u200d", "\u00ad \u200b"[:2]])
def test_invisible_names_are_blank(blank: str) -> None:
    v = Violations()
    rules.check_display_name(v, blank, "f")
    assert [i.description for i in v.items] == ["is required and must not be blank"]


@given(st.text(max_size=200))
def test_printable_ids(value: str) -> None:
    expected = 0 < len(value) <= 128 and not any(c.isspace() or not c.isprintable() for c in value)
    assert rules.is_printable_id(value, 128) == expected
