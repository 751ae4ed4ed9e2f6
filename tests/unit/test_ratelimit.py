"""The token bucket, on a fake clock: never above its rate, slower after a 429, recovering."""

from __future__ import annotations

import asyncio

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


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
