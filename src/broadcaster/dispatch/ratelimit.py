"""A token bucket at a channel's published request ceiling that backs off when the channel
says "too many requests" and creeps back up as requests succeed.

Time and sleeping are injected, so tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """A schedule of send slots `1 / rate` apart (GCRA): each caller takes the next free slot
    and sleeps until it. Slots follow the schedule, not the moment a sleeper wakes up, so a
    sleep that overshoots (the event loop wakes timers on millisecond ticks) does not push the
    following slots back: at 200 requests/s, a millisecond lost per request would cost 20 % of
    the rate."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        floor: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`rate` requests/s at most; `burst` requests at once at most after a pause (default: a
        tenth of a second of requests, at least one); on a rate-limit answer the rate drops,
        never below `floor` * `rate`."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = rate
        self.rate = rate
        self._floor = rate * floor
        self._burst = max(1.0, burst if burst is not None else rate / 10)
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf  # the next free slot, if it is in the future: none yet

    async def acquire(self) -> float:
        """Wait for a slot; returns how long the caller waited (seconds). First come, first
        served: the slot is taken before sleeping. A sleeper woken later than one interval
        past its slot (the event loop was held up) takes a new slot instead of going late, so
        requests never bunch up after a stall: in any window of t seconds there are at most
        rate * (t + 1 / rate) + burst of them."""
        waited = 0.0
        while True:
            now = self._clock()
            # After a pause, up to `burst` slots may lie in the past: they go at once.
            slot = max(self._next, now - (self._burst - 1) / self.rate)
            self._next = slot + 1 / self.rate
            if slot <= now:
                return waited
            await self._sleep(slot - now)
            woke = self._clock()
            waited += woke - now
            if woke - slot <= 1 / self.rate:
                return waited

    def slow_down(self) -> None:
        """The channel answered "too many requests": halve the rate (down to the floor) and
        space the next slot a full new interval out, dropping any saved burst."""
        self.rate = max(self._floor, self.rate / 2)
        self._next = max(self._next, self._clock()) + 1 / self.rate

    def succeeded(self) -> None:
        """A request went through: win back a little of the rate, up to the ceiling."""
        if self.rate < self.ceiling:
            self.rate = min(self.ceiling, self.rate + self.ceiling / 100)
