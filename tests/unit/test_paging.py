from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.paging import INT64_MAX, MAX_AFTER, Page, PageTokens

TOKENS = PageTokens(b"k" * 32)
_afters = st.text(min_size=1, max_size=MAX_AFTER).filter(str.isprintable)


def _refused(tokens: PageTokens, token: str, query: str = "q") -> InvalidArgument:
    with pytest.raises(InvalidArgument) as e:
        tokens.request(1, token, query, default=1, maximum=1)
    assert e.value.reason == "INVALID_PAGE_TOKEN"
    assert [v.field for v in e.value.violations] == ["page_token"]
    return e.value


def test_defaults_and_caps() -> None:
    assert TOKENS.request(0, "", "q", default=50, maximum=1000) == Page(50, None)
    assert TOKENS.request(5000, "", "q", default=50, maximum=1000) == Page(1000, None)
    with pytest.raises(InvalidArgument) as e:
        TOKENS.request(-1, "", "q", default=50, maximum=1000)
    assert e.value.violations[0].field == "page_size"


@given(after=_afters, query=st.text())
def test_token_round_trip(after: str, query: str) -> None:
    token = TOKENS.encode(after, query)
    assert TOKENS.request(1, token, query, default=1, maximum=1).after == after


@given(token=st.text(min_size=1))
def test_arbitrary_tokens_are_refused_cleanly(token: str) -> None:
    _refused(TOKENS, token)


def _unsigned(after: object, query: str) -> str:
    raw = json.dumps({"a": after, "q": query}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@given(after=st.one_of(_afters, st.integers(), st.just("9" * 30)), mac=st.binary(max_size=32))
def test_a_token_not_signed_with_the_key_is_refused(after: object, mac: bytes) -> None:
    """What the old tokens were (a hash anyone recomputes), with any check value at all."""
    forged = _unsigned(after, "q") + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    _refused(TOKENS, forged)
    _refused(TOKENS, _unsigned(after, "q"))


@given(after=_afters)
def test_another_key_signs_other_tokens(after: str) -> None:
    _refused(PageTokens(b"other key, another deployment"), TOKENS.encode(after, "q"))


@given(after=st.one_of(st.text(max_size=200), st.just("")), query=st.just("q"))
def test_a_signed_token_is_still_bounded(after: str, query: str) -> None:
    """Even a token with a valid check value (a leaked key) carries only a short printable key."""
    token = TOKENS.encode(after, query)
    if 0 < len(after) <= MAX_AFTER and after.isprintable():
        assert TOKENS.request(1, token, query, default=1, maximum=1).after == after
    else:
        _refused(TOKENS, token)


def test_a_token_over_the_size_limit_is_refused_unread() -> None:
    _refused(TOKENS, "A" * 10_000)


@pytest.mark.parametrize(
    ("after", "number"),
    [("0", 0), ("1", 1), (str(INT64_MAX), INT64_MAX)],
)
def test_numeric_keys_at_their_bounds(after: str, number: int) -> None:
    assert Page(1, after).after_number() == number


@pytest.mark.parametrize("after", [str(INT64_MAX + 1), "9" * 30, "-1", "1e9", "١٢", " 1", "+1"])
def test_numeric_keys_out_of_range_are_refused(after: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        Page(1, after).after_number()
    assert e.value.reason == "INVALID_PAGE_TOKEN"


def test_token_from_another_query_is_refused() -> None:
    e = _refused(TOKENS, TOKENS.encode("k", "query-a"), "query-b")
    assert "other parameters" in e.violations[0].description


def test_next_token_only_when_more_rows() -> None:
    page = Page(2, None)
    assert TOKENS.next(["a", "b"], page, "q") == ""
    token = TOKENS.next(["a", "b", "c"], page, "q")
    assert TOKENS.request(2, token, "q", default=2, maximum=2).after == "b"
