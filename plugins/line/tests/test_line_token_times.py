"""The renewal rule of issued tokens, and the settings that tune it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from broadcaster_line.tokens import (
    DEFAULT_RENEW_MARGIN,
    MAX_LIFETIME,
    RENEW_MARGIN_ENV,
    renew_margin,
    timed,
)
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.channels import CredentialsInvalid

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@given(
    expires_in=st.integers(min_value=-10, max_value=MAX_LIFETIME),
    margin=st.integers(min_value=1, max_value=MAX_LIFETIME),
)
def test_a_token_is_renewed_before_it_expires_and_not_before_half_its_life(
    expires_in: int, margin: int
) -> None:
    credential = timed("t", NOW, expires_in, margin)

    lifetime = credential.expire_time - credential.issue_time
    ahead = credential.expire_time - credential.renew_time
    assert lifetime == timedelta(seconds=max(1, expires_in))
    assert credential.issue_time < credential.renew_time < credential.expire_time
    assert ahead <= timedelta(seconds=margin)
    assert ahead <= lifetime / 2
    assert ahead == min(timedelta(seconds=margin), lifetime / 2)


@given(st.integers(min_value=1, max_value=MAX_LIFETIME))
def test_margins_in_range_are_taken(seconds: int) -> None:
    assert renew_margin({RENEW_MARGIN_ENV: f" {seconds} "}) == seconds


@given(
    st.one_of(
        st.integers(max_value=0).map(str),
        st.integers(min_value=MAX_LIFETIME + 1).map(str),
        st.text(alphabet="abc.-e ", min_size=1).filter(lambda v: v.strip() != ""),
    )
)
def test_other_margins_are_refused(value: str) -> None:
    with pytest.raises(CredentialsInvalid, match=RENEW_MARGIN_ENV):
        renew_margin({RENEW_MARGIN_ENV: value})


def test_the_margin_defaults_to_a_day() -> None:
    assert renew_margin({}) == DEFAULT_RENEW_MARGIN == 86_400
