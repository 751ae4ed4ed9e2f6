from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain import rules
from broadcaster.domain.errors import Violations


@given(st.text(max_size=400))
def test_display_name_rule(value: str) -> None:
    v = Violations()
    rules.check_display_name(v, value, "f")
    ok = bool(value.strip()) and len(value) <= 256 and value.isprintable()
    assert (not v.items) == ok
    assert all(i.field == "f" for i in v.items)


@given(st.text(max_size=200))
def test_printable_ids(value: str) -> None:
    expected = 0 < len(value) <= 128 and not any(c.isspace() or not c.isprintable() for c in value)
    assert rules.is_printable_id(value, 128) == expected
