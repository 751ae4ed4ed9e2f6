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
