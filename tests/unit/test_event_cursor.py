"""Event cursors: every position round-trips through its cursor for its merchant; a cursor shows
nothing of the position (the outbox row counts every merchant's sending); anything else a
caller sends, another merchant's cursor or a changed one included, is refused as
INVALID_CURSOR, never an internal error."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.deliveries import START, EventPosition
from broadcaster.domain.errors import InvalidArgument
from broadcaster.services.event_cursors import EventCursors

KEY = "a-secret-key-for-event-cursors-0123456789"
OLD_KEY = "an-older-secret-key-still-accepted-0123456789"
cursors = EventCursors([KEY])

positions = st.builds(
    EventPosition,
    row=st.integers(0, 2**48 - 2),
    seq=st.integers(0, 2**32 - 1),
    kind_order=st.integers(0, 1),
)
merchants = st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)


def _refused(merchant: str, cursor: str) -> bool:
    try:
        cursors.open(merchant, cursor, "after_cursor")
    except InvalidArgument as e:
        return e.reason == "INVALID_CURSOR" and e.violations[0].field == "after_cursor"
    return False


@given(merchants, st.lists(positions, min_size=1, max_size=50))
def test_cursors_round_trip(merchant: str, found: list[EventPosition]) -> None:
    found.sort()
    sealed = cursors.seal(merchant, found)
    assert [cursors.open(merchant, c, "after_cursor") for c in sealed] == found


def test_empty_cursor_is_the_start() -> None:
    assert cursors.open("m", "", "after_cursor") == START


@given(positions)
def test_a_cursor_shows_nothing_of_its_position(position: EventPosition) -> None:
    """Neighbouring rows (one merchant's rows interleaved with others') share nothing that
    would let a merchant subtract one cursor from another."""
    after = EventPosition(position.row + 1, position.seq, position.kind_order)
    a, b = (base64.urlsafe_b64decode(c)[2:] for c in cursors.seal("m", [position, after]))
    assert sum(x != y for x, y in zip(a, b, strict=True)) >= 8  # not a counter: noise


@given(merchants, merchants, positions)
def test_another_merchants_cursor_is_refused(a: str, b: str, position: EventPosition) -> None:
    if a != b:
        assert _refused(b, cursors.seal(a, [position])[0])


@given(positions, st.integers(0, 17 * 8 - 1))
def test_a_changed_cursor_is_refused(position: EventPosition, bit: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(cursors.seal("m", [position])[0]))
    raw[bit // 8] ^= 1 << (bit % 8)
    changed = base64.urlsafe_b64encode(bytes(raw)).decode()
    assert bit // 8 == 1 or _refused("m", changed)  # byte 1 only hints at the key


@given(st.text(max_size=40))
def test_anything_else_is_refused(cursor: str) -> None:
    assert cursor == "" or _refused("m", cursor)


@pytest.mark.parametrize("raw", ["ev1.2.0", "9" * 30, "A" * 24, "AQ" + "A" * 22])
def test_old_and_made_up_cursors_are_refused(raw: str) -> None:
    assert _refused("m", raw)
    assert _refused("m", base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="))


def test_cursors_survive_a_key_rotation() -> None:
    position = EventPosition(12, 34, 1)
    before = EventCursors([OLD_KEY]).seal("m", [position])[0]
    rotated = EventCursors([KEY, OLD_KEY])
    assert rotated.open("m", before, "after_cursor") == position
    assert rotated.seal("m", [position]) == cursors.seal("m", [position])
    with pytest.raises(InvalidArgument):
        cursors.open("m", before, "after_cursor")  # a key no longer configured
