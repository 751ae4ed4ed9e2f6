"""Database error messages keep their diagnosis and lose the data they quote."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.store.database import scrub_message

_VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1)


@given(_VALUE)
def test_detail_context_and_quoted_input_are_cut(value: str) -> None:
    messages = [
        f'null value in column "a" of relation "t" violates not-null constraint\n'
        f"DETAIL:  Failing row contains (1, {value}).",
        f'duplicate key value violates unique constraint "pk"\nDETAIL:  Key (id)=({value}) exists.',
        f"invalid input syntax for type json\nDETAIL:  Token is invalid.\nCONTEXT:  JSON data, "
        f"line 1: {value}",
        f'invalid input syntax for type integer: "{value}"',
    ]
    for message in messages:
        scrubbed = scrub_message(message)
        assert "\n" not in scrubbed and "DETAIL" not in scrubbed
        assert scrubbed.split(":")[0] == message.split("\n")[0].split(":")[0]
        if len(value) > 3:
            assert f"{value})" not in scrubbed and f'"{value}"' not in scrubbed


def test_messages_without_data_are_kept() -> None:
    for message in ("NOT NULL constraint failed: webhook_events.receive_time", "deadlock detected"):
        assert scrub_message(message) == message
