"""Retry policy: jittered exponential backoff, and never a blind retry once the channel may have
forgotten the batch's idempotency key."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.retries import (
    MAX_DELAY,
    WINDOW_MARGIN,
    OutcomeUnknown,
    Rekey,
    Retry,
    backoff,
    next_step,
)

DAY = 86_400.0


@given(attempts=st.integers(1, 50), seed=st.integers())
def test_backoff_is_bounded_and_grows(attempts: int, seed: int) -> None:
    delay = backoff(attempts, random.Random(seed))
    assert 0 <= delay <= min(MAX_DELAY, 0.5 * 2 ** (attempts - 1))


@given(
    attempts=st.integers(1, 30),
    age=st.floats(0, 2 * DAY),
    retry_after=st.one_of(st.none(), st.floats(0, 3600)),
    seed=st.integers(),
)
def test_no_retry_can_land_after_the_key_window(
    attempts: int, age: float, retry_after: float | None, seed: int
) -> None:
    step = next_step(
        attempts=attempts,
        first_attempt_age=age,
        key_window=DAY,
        retry_after=retry_after,
        rng=random.Random(seed),
    )
    if isinstance(step, Retry):
        assert age + step.delay < DAY * WINDOW_MARGIN
        if retry_after is not None:
            assert step.delay == retry_after
    else:
        assert isinstance(step, OutcomeUnknown) and step.reason.startswith("KEY_EXPIRED")


def test_a_fresh_batch_is_retried() -> None:
    step = next_step(
        attempts=1, first_attempt_age=1.0, key_window=DAY, retry_after=None, rng=random.Random(1)
    )
    assert isinstance(step, Retry) and step.delay <= 0.5


@given(
    attempts=st.integers(1, 30),
    age=st.floats(0, 2 * DAY),
    retry_after=st.one_of(st.none(), st.floats(0, 30 * DAY)),
    maybe_accepted=st.booleans(),
    seed=st.integers(),
)
def test_outcome_unknown_only_where_an_attempt_may_have_been_accepted(
    attempts: int, age: float, retry_after: float | None, maybe_accepted: bool, seed: int
) -> None:
    """A batch every attempt of which was refused for sure (say, 429 with a Retry-After past
    the key window) is never marked OUTCOME_UNKNOWN: it starts over with a fresh key after the
    wait. Only a possibly accepted one is given up; no retry with the old key lands late."""
    step = next_step(
        attempts=attempts,
        first_attempt_age=age,
        key_window=DAY,
        retry_after=retry_after,
        rng=random.Random(seed),
        maybe_accepted=maybe_accepted,
    )
    match step:
        case Retry(delay):
            assert age + delay < DAY * WINDOW_MARGIN
        case Rekey(delay):
            assert not maybe_accepted and age + delay >= DAY * WINDOW_MARGIN
            assert retry_after is None or delay == retry_after
        case OutcomeUnknown():
            assert maybe_accepted and step.reason.startswith("KEY_EXPIRED")
    if retry_after is not None and not isinstance(step, OutcomeUnknown):
        assert step.delay == retry_after


def test_a_long_rate_limit_wait_starts_over_with_a_fresh_key() -> None:
    step = next_step(
        attempts=1,
        first_attempt_age=0.0,
        key_window=DAY,
        retry_after=DAY,
        rng=random.Random(1),
        maybe_accepted=False,
    )
    assert step == Rekey(DAY)
