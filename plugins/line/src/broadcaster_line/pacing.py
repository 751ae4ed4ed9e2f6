"""Client-side pacing for contact sync, so the channel stays under LINE's 2,000 req/s ceiling for
follower ids and profiles rather than discovering it through 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# LINE allows 2,000 requests per second per channel on these endpoints; keep some headroom for
# clock skew between us and LINE and for other calls the account makes.
SYNC_REQUESTS_PER_SECOND = 1_900.0
SYNC_BURST = 50


class TokenBucket:
    """A token bucket as a schedule (GCRA): each `acquire` reserves the next free slot, so
    waiters are served in order and never spin. `burst` requests may go at once after a
    quiet spell."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._next = clock()  # the theoretical arrival time of the next request

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def reserve(self) -> float:
        """Take the next slot; returns how many seconds to wait before using it."""
        now = self._clock()
        start = max(self._next, now)
        self._next = start + self._interval
        delay = start - now - self._tolerance
        return delay if delay > 1e-9 else 0.0  # float dust is not a wait

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
