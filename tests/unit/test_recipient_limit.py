"""Recipient limits: the range a number may take, what the estimate shows with one, and the
shape of the API message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.api.convert_broadcasts import limit_in, limit_out
from broadcaster.domain.broadcasts import Estimate, RecipientLimit
from broadcaster.domain.errors import InvalidArgument, Violations
from broadcaster.domain.rules import MAX_RECIPIENT_LIMIT, check_recipient_limit
from broadcaster.v1 import broadcast_service_pb2 as pb


@given(st.integers(-(2**63), 2**63 - 1))
def test_a_number_is_valid_from_one_to_the_maximum(n: int) -> None:
    v = Violations()
    check_recipient_limit(v, n, "recipient_limit")
    assert (not v.items) == (1 <= n <= MAX_RECIPIENT_LIMIT)
    assert all(item.field == "recipient_limit.max_recipients" for item in v.items)


def test_the_remaining_quota_is_always_valid() -> None:
    v = Violations()
    check_recipient_limit(v, None, "recipient_limit")
    assert not v.items


def _estimate(expected: int, remaining: int | None, limit: int | None) -> Estimate:
    return Estimate(
        matched=expected + 3, opted_out=2, unreachable=1, quota_limited=remaining is not None,
        quota_remaining=remaining, eligible=True, ineligible_reason="", ineligible_message="",
        estimate_time=datetime(2026, 1, 1, tzinfo=UTC), limit=limit,
    )  # fmt: skip


@given(
    expected=st.integers(0, 10**6),
    remaining=st.one_of(st.none(), st.integers(0, 10**6)),
    limit=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_the_estimate_shows_both_figures(
    expected: int, remaining: int | None, limit: int | None
) -> None:
    e = _estimate(expected, remaining, limit)
    assert e.expected_recipients == expected
    assert e.capped_recipients == (expected if limit is None else min(expected, limit))
    assert e.capped_recipients + e.left_out_by_limit == expected
    assert e.exceeds_quota == (remaining is not None and e.capped_recipients > remaining)


def test_the_issue_example() -> None:
    e = _estimate(49_105, 20_000, RecipientLimit(None).cap(20_000))
    assert (e.expected_recipients, e.capped_recipients, e.left_out_by_limit) == (
        49_105, 20_000, 29_105,
    )  # fmt: skip
    assert not e.exceeds_quota and RecipientLimit(500).cap(20_000) == 500
    assert RecipientLimit(None).cap(None) is None  # no quota: no limit


def test_the_message_shape() -> None:
    assert limit_in(pb.SendBroadcastRequest()) is None
    for limit in (RecipientLimit(7), RecipientLimit(None)):
        request = pb.SendBroadcastRequest(recipient_limit=limit_out(limit))
        assert limit_in(request) == limit
    # A number out of range is the service's to refuse (with the rest of the request).
    assert limit_in(
        pb.EstimateAudienceRequest(recipient_limit=pb.RecipientLimit(max_recipients=0))
    ) == RecipientLimit(0)
    for bad in (pb.RecipientLimit(), pb.RecipientLimit(remaining_quota=False)):
        with pytest.raises(InvalidArgument) as e:
            limit_in(pb.SendBroadcastRequest(recipient_limit=bad))
        assert [v.field for v in e.value.violations] == ["recipient_limit"]
