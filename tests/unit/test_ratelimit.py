"""The token bucket, on a fake clock: never above its rate, slower after a 429, recovering."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.dispatch.ratelimit import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _bucket(rate: float, burst: float | None = None) -> tuple[TokenBucket, FakeTime]:
    t = FakeTime()
    return TokenBucket(rate, burst=burst, clock=t.clock, sleep=t.sleep), t


@given(rate=st.floats(1, 5000), count=st.integers(1, 2000))
def test_never_faster_than_the_rate(rate: float, count: int) -> None:
    bucket, t = _bucket(rate)

    async def run() -> list[float]:
        stamps = []
        for _ in range(count):
            await bucket.acquire()
            stamps.append(t.now)
        return stamps

    stamps = asyncio.run(run())
    burst = max(1.0, rate / 10)
    # In any span, at most burst + rate * span requests.
    assert count <= burst + rate * stamps[-1] + 1e-6
    # And it is not slower than the rate either (after the burst, spacing is 1/rate).
    assert stamps[-1] <= max(0.0, (count - burst) / rate) + 1e-6


def test_slows_down_on_429_and_recovers() -> None:
    bucket, _ = _bucket(200)
    bucket.slow_down()
    assert bucket.rate == 100
    for _ in range(10):
        bucket.slow_down()
    assert bucket.rate == pytest.approx(20)  # the floor: a tenth of the ceiling
    for _ in range(1000):
        bucket.succeeded()
    assert bucket.rate == 200


def test_concurrent_callers_share_the_rate() -> None:
    bucket, t = _bucket(100, burst=1)

    async def run() -> None:
        await asyncio.gather(*(bucket.acquire() for _ in range(101)))

    asyncio.run(run())
    assert t.now == pytest.approx(1.0)


def test_late_wake_ups_do_not_lower_the_rate() -> None:
    """A sleeper that wakes a millisecond late (as event loops do) still gets the next slot on
    schedule: 100 requests at 200/s take half a second, not 100 late wake-ups more."""
    t = FakeTime()

    async def late_sleep(seconds: float) -> None:
        t.now += seconds + 0.001

    bucket = TokenBucket(200, burst=1, clock=t.clock, sleep=late_sleep)

    async def run() -> None:
        for _ in range(100):
            await bucket.acquire()

    asyncio.run(run())
    assert t.now == pytest.approx(99 / 200 + 0.001)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_a_stalled_sleeper_takes_a_new_slot() -> None:
    """Sleepers woken long after their slots (the loop was held up) do not go all at once."""
    t = FakeTime()
    stall = [0.5]

    async def stalling_sleep(seconds: float) -> None:
        t.now += seconds + (stall.pop() if stall else 0.0)

    bucket = TokenBucket(100, burst=1, clock=t.clock, sleep=stalling_sleep)
    stamps = []

    async def run() -> None:
        for _ in range(20):
            await bucket.acquire()
            stamps.append(t.now)

    asyncio.run(run())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.01 - 1e-9
