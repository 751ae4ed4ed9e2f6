"""A token bucket at a channel's published request ceiling that backs off when the channel
says "too many requests" and creeps back up as requests succeed.

Time and sleeping are injected, so tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        floor: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`rate` requests/s at most; `burst` tokens held at most (default: a tenth of a second
        of requests, at least one); on a rate-limit answer the rate drops, never below
        `floor` * `rate`."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate
        self.rate = rate
        self._floor = rate * floor
        self._burst = max(1.0, burst if burst is not None else rate / 10)
        self._tokens = self._burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self) -> float:
        """Wait for a token; returns how long the caller waited (seconds)."""
        waited = 0.0
        async with self._lock:  # first come, first served
            self._refill()
            # The tolerance keeps float rounding (0.9999999…) from asking for sleeps too short
            # to move the clock.
            while self._tokens < 1 - 1e-9:
                delay = (1 - self._tokens) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
            self._tokens -= 1
        return waited

    def slow_down(self) -> None:
        """The channel answered "too many requests": halve the rate (down to the floor) and
        drop the saved burst, so the next requests are spaced out."""
        self.rate = max(self._floor, self.rate / 2)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        """A request went through: win back a little of the rate, up to the ceiling."""
        if self.rate < self.ceiling:
            self.rate = min(self.ceiling, self.rate + self.ceiling / 100)
