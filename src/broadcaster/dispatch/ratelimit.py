"""A token bucket at a channel's published request ceiling that backs off when the channel
says "too many requests" and creeps back up as requests succeed.

Time and sleeping are injected, so tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

LATE_INTERVALS = 3  # a sleeper woken later than this many intervals past its slot takes another


class TokenBucket:
    """A schedule of send slots `1 / rate` apart (GCRA): each caller takes the next free slot
    and sleeps until it. Slots follow the schedule, not the moment a sleeper wakes up, so a
    sleep that overshoots (the event loop wakes timers on millisecond ticks, or late when
    threads hold the interpreter) does not push the following slots back: at 200 requests/s, a
    millisecond lost per request would cost 20 % of the rate.

    A sleeper woken a little late still goes; one woken much later (a stall) takes a new slot,
    so requests do not bunch up after a stall: any t seconds then hold at most
    rate * (t + LATE_INTERVALS / rate) + burst requests. `window` also caps how many go in
    any one-second window (the limit channels enforce), whatever happens."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        floor: float = 0.1,
        window: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`rate` requests/s at most; `burst` requests at once at most after a pause (default: a
        tenth of a second of requests, at least one); on a rate-limit answer the rate drops,
        never below `floor` * `rate`; at most `window` requests in any one second."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        if window is not None and window < 1:
            raise ValueError("window must allow a request")
        self.ceiling = rate
        self.rate = rate
        self._floor = rate * floor
        self._burst = max(1.0, burst if burst is not None else rate / 10)
        self._window = window
        self._sent: deque[float] = deque()  # times of the requests of the last second
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf  # the next free slot, if it is in the future: none yet

    async def acquire(self) -> float:
        """Wait for a slot; returns how long the caller waited (seconds). First come, first
        served: the slot is taken before sleeping. A sleeper woken more than three intervals past
        its slot (the event loop was held up) takes a new slot rather than bunch up with the
        others woken late; then the window, if any, is checked."""
        started = self._clock()
        while True:
            now = self._clock()
            # After a pause, up to `burst` slots may lie in the past: they go at once.
            slot = max(self._next, now - (self._burst - 1) / self.rate)
            self._next = slot + 1 / self.rate
            if slot <= now:
                break
            await self._sleep(slot - now)
            if self._clock() - slot <= LATE_INTERVALS / self.rate:
                break
        if self._window is not None:
            sent = self._sent
            while True:
                now = self._clock()
                # (The tolerance keeps float rounding from making a sleep too short to move on.)
                while sent and sent[0] + 1.0 <= now + 1e-9:
                    sent.popleft()
                if len(sent) < self._window:
                    break
                await self._sleep(sent[0] + 1.0 - now)
            sent.append(now)  # no await since the check: no one else went meanwhile
        return max(0.0, self._clock() - started)

    def slow_down(self) -> None:
        """The channel answered "too many requests": halve the rate (down to the floor) and
        space the next slot a full new interval out, dropping any saved burst."""
        self.rate = max(self._floor, self.rate / 2)
        self._next = max(self._next, self._clock()) + 1 / self.rate

    def succeeded(self) -> None:
        """A request went through: win back a little of the rate, up to the ceiling."""
        if self.rate < self.ceiling:
            self.rate = min(self.ceiling, self.rate + self.ceiling / 100)
