"""The token bucket, on a fake clock: never above its rate, slower after a 429, recovering."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math

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


class VirtualTime:
    """Sleepers wake in time order on a virtual clock, which a stall can jump forward (as if
    the event loop had been held up) before the next wakes."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def run(self, tasks: list[asyncio.Task[None]], stall_at: float, stall: float) -> None:
        while not all(t.done() for t in tasks):
            for _ in range(5):
                await asyncio.sleep(0)  # let the callers take their slots
            if not self._sleepers:
                continue
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if self.now >= stall_at:
                self.now, stall_at = self.now + stall, math.inf
            future.set_result(None)


def test_after_a_stall_late_requests_stay_within_the_window() -> None:
    """Callers waiting when the loop stalls all wake late: those much too late take new slots
    instead of going at once, and no second ever holds more than `window` requests."""
    t = VirtualTime()
    bucket = TokenBucket(100, burst=1, window=99, clock=t.clock, sleep=t.sleep)
    stamps: list[float] = []

    async def caller() -> None:
        for _ in range(6):
            await bucket.acquire()
            stamps.append(t.now)

    async def run() -> None:
        tasks = [asyncio.create_task(caller()) for _ in range(50)]
        await t.run(tasks, stall_at=0.5, stall=0.9)

    asyncio.run(run())
    assert len(stamps) == 300
    # (A microsecond's tolerance at the window's edge: the clock is a float.)
    busiest = max(bisect.bisect_right(stamps, s) - bisect.bisect_right(stamps, s - 1.0 + 1e-6)
                  for s in stamps)  # fmt: skip
    assert busiest <= 99
    # Right after the stall, requests are spaced again rather than all at once.
    after = [s for s in stamps if s >= 1.4]
    assert sum(1 for s in after if s < 1.41) <= 3
