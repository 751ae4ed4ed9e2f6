"""Event cursors: every position round-trips through its cursor, in stream order; anything
else a caller sends is refused as INVALID_CURSOR, never an internal error."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.deliveries import START, EventPosition
from broadcaster.domain.errors import InvalidArgument
from broadcaster.services.events import decode_cursor, encode_cursor

positions = st.builds(
    EventPosition,
    row=st.integers(0, 10**17),
    seq=st.integers(0, 10**17),
    kind_order=st.integers(0, 1),
)


@given(positions)
def test_cursor_round_trips(position: EventPosition) -> None:
    assert decode_cursor(encode_cursor(position), "after_cursor") == position


@given(positions, positions)
def test_positions_order_as_the_stream(a: EventPosition, b: EventPosition) -> None:
    assert (a < b) == ((a.row, a.seq, a.kind_order) < (b.row, b.seq, b.kind_order))


def test_empty_cursor_is_the_start() -> None:
    assert decode_cursor("", "after_cursor") == START


@given(st.text(max_size=40))
def test_anything_else_is_refused(cursor: str) -> None:
    try:
        decoded = decode_cursor(cursor, "after_cursor")
    except InvalidArgument as e:
        assert e.reason == "INVALID_CURSOR"
    else:  # only a cursor this service could have issued decodes
        assert encode_cursor(decoded) == cursor or cursor == ""


@pytest.mark.parametrize("raw", ["ev1.2.2", "ev1.2", "ev-1.2.0", "ev1.2.0.0", "x1.2.0"])
def test_malformed_positions_are_refused(raw: str) -> None:
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(InvalidArgument):
        decode_cursor(cursor, "after_cursor")
