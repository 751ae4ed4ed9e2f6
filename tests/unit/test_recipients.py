"""A batch's recipients as the channel receives them (domain.recipients): the same ids whether
made from the ids or from the JSON array the store keeps, and a JSON array of them either way."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.recipients import Recipients

IDS = st.lists(st.text(max_size=40), max_size=30)


def _stored(ids: list[str], separators: tuple[str, str] = (",", ":"), ascii: bool = False) -> str:
    """`ids` as a database writes its JSON array: SQLite compact and not escaping what is not
    ASCII, PostgreSQL with a space after each comma."""
    return json.dumps(ids, separators=separators, ensure_ascii=ascii)


@given(IDS)
def test_recipients_made_from_ids_read_as_those_ids(ids: list[str]) -> None:
    made = Recipients(ids)
    assert len(made) == len(ids)
    assert list(made) == ids
    assert made == ids and made == tuple(ids)
    assert json.loads(made.json_array()) == ids
    assert made.json_array().isascii()


@given(IDS, st.sampled_from([(",", ":"), (", ", ": ")]), st.booleans())
def test_recipients_from_a_stored_array_are_its_ids_and_give_an_ascii_array(
    ids: list[str], separators: tuple[str, str], ascii: bool
) -> None:
    array = _stored(ids, separators, ascii)
    made = Recipients.stored(array, len(ids))
    assert json.loads(made.json_array()) == ids
    assert made.json_array().isascii()
    assert made == Recipients(ids) and hash(made) == hash(Recipients(ids))
    assert list(made) == ids and len(made) == len(ids)
    assert made[1:] == ids[1:]
    assert all(i in made for i in ids)


def test_a_stored_ascii_array_goes_to_the_channel_as_it_was_read() -> None:
    array = '["Ua", "Ub"]'  # as PostgreSQL writes it
    made = Recipients.stored(array, 2)
    assert made.json_array() is array
    assert made._ids is None  # never decoded


def test_ids_that_need_no_escaping_are_joined_as_they_are() -> None:
    assert Recipients(["U1", "U2"]).json_array() == '["U1","U2"]'
    assert Recipients([]).json_array() == "[]"
    assert Recipients(['a"b', "c\\d", "é"]).json_array() == '["a\\"b","c\\\\d","\\u00e9"]'


def test_of_keeps_recipients_and_wraps_other_sequences() -> None:
    made = Recipients(["U1"])
    assert Recipients.of(made) is made
    assert Recipients.of(["U1"]) == made
    assert made != "U1" and made != ["U2"]
    assert repr(Recipients.stored('["U1"]', 1)) == "Recipients(['U1'])"
