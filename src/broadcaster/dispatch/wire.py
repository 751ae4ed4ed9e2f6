"""How many of a channel's batches may be in flight at once, sized to how fast it answers.

A channel at its ceiling keeps rate x answer time requests in flight: 200 requests/s answered in
30 ms is 6, in 300 ms 60. A fixed bound of 32 held a channel whose answers took longer than
160 ms below its ceiling (at 300 ms, 4 channels of 100,000 recipients reached 90 requests/s
each of their 200). So the bound follows the answers: the channel's rate x the recent answer
time, with a quarter more for the answers' spread, never below `least` (what it starts with)
nor above `most` (what a deleted channel or a refused credential can still let through, and
the connections one channel may hold).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

HEADROOM = 1.25  # in flight per request the rate and the answer time call for
SMOOTHING = 0.1  # each answer's weight in the recent answer time


class Slots:
    """A bound on tasks at once whose size may change while slots are held: shrinking it holds
    the next acquirers back until enough slots are released; growing it lets waiters in at
    once. First come, first served."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a bound must allow one")
        self.size = size
        self.held = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.held < self.size and not self._waiting:
            self.held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled before it could use it
            else:
                self._waiting.remove(waiter)
            raise

    def release(self) -> None:
        self.held -= 1
        self._admit()

    def resize(self, size: int) -> None:
        if size < 1:
            raise ValueError("a bound must allow one")
        self.size = size
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.held < self.size:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self.held += 1
                waiter.set_result(None)


class AnswerPace:
    """A channel's bound in flight from its answers: `answered(seconds)` after each answer the
    channel took, `bound` the slots it calls for."""

    def __init__(self, rate: float = 0.0, *, least: int, most: int) -> None:
        """`rate`: the channel's requests per second, set once known (before any answer)."""
        self.rate = rate
        self.least = min(least, most)
        self.most = most
        self.answer_time: float | None = None  # seconds, smoothed; None before an answer

    def answered(self, seconds: float) -> int:
        """Note one answer's time; returns the bound."""
        if self.answer_time is None:
            self.answer_time = seconds
        else:
            self.answer_time += SMOOTHING * (seconds - self.answer_time)
        return self.bound

    @property
    def bound(self) -> int:
        if self.answer_time is None:
            return self.least
        wanted = math.ceil(self.rate * self.answer_time * HEADROOM - 1e-9)  # (float rounding)
        return max(self.least, min(self.most, wanted))
