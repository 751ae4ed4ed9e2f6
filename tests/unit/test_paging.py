from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.paging import Page, encode_token, next_token, page_request


def test_defaults_and_caps() -> None:
    assert page_request(0, "", "q", default=50, maximum=1000) == Page(50, None)
    assert page_request(5000, "", "q", default=50, maximum=1000) == Page(1000, None)
    with pytest.raises(InvalidArgument) as e:
        page_request(-1, "", "q", default=50, maximum=1000)
    assert e.value.violations[0].field == "page_size"


@given(after=st.text(), query=st.text())
def test_token_round_trip(after: str, query: str) -> None:
    assert page_request(1, encode_token(after, query), query, default=1, maximum=1).after == after


@given(token=st.text(min_size=1))
def test_arbitrary_tokens_are_refused_cleanly(token: str) -> None:
    try:
        page_request(1, token, "q", default=1, maximum=1)
    except InvalidArgument as e:
        assert e.reason == "INVALID_PAGE_TOKEN"


def test_token_from_another_query_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        page_request(1, encode_token("k", "query-a"), "query-b", default=1, maximum=1)


def test_next_token_only_when_more_rows() -> None:
    page = Page(2, None)
    assert next_token(["a", "b"], page, "q") == ""
    assert (
        page_request(2, next_token(["a", "b", "c"], page, "q"), "q", default=2, maximum=2).after
        == "b"
    )
