"""The payloads of the dispatch notifications between replicas: a cancelled broadcast is told
apart from a channel with work, and read back as it was written."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.store import notifications

ids = st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyz", min_size=1, max_size=26)


@given(ids, ids)
def test_a_cancel_is_read_back_as_written(channel: str, broadcast: str) -> None:
    payload = notifications.cancelled_payload(channel, broadcast)
    assert notifications.cancelled_in(payload) == (channel, broadcast)


@given(st.one_of(st.none(), st.just(""), ids, st.just("cancelled "), st.just("cancelled x")))
def test_other_payloads_are_no_cancel(payload: str | None) -> None:
    """A channel's id, nothing, or a cancel that names no broadcast: a wake-up."""
    assert notifications.cancelled_in(payload) is None
