"""Time sources: the emulator never reads the system clock directly, so tests can drive token
buckets, retry-key expiry and continuation-token expiry without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the emulator needs to know about time."""

    def time(self) -> float:
        """Seconds since the Unix epoch (timestamps, webhook event times, per-second stats)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (token buckets, expiry)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; both readings advance together.

    The monotonic reading starts at 0 so that small steps stay exact in floating point."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._start = start
        self._elapsed = 0.0

    def time(self) -> float:
        return self._start + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._elapsed += seconds
