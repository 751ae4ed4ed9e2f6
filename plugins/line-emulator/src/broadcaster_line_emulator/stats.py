"""Counters for benchmarks and assertions: requests by endpoint and status, 429s the emulator
chose to give (and why), injected faults, per-second histograms with the peak rate seen in
any one-second window, so a test can prove a client stayed under LINE's limits, and the most
requests in progress at once (from arrival to answer, injected latency included), per channel
and in all, so a test can see how many a client keeps open."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from .clock import Clock

RESET = 0
"""Status recorded for a request whose connection was closed without a response."""


@dataclass(eq=False)
class _Window:
    """A one-second sliding window plus an aligned per-second histogram, when the first and
    last requests came, and the longest pause between two of them: between their answers, and
    between their arrivals (which, with injected latency, came that much earlier)."""

    times: deque[float] = field(default_factory=deque)
    peak: int = 0
    per_second: Counter[int] = field(default_factory=Counter)
    first: float | None = None
    last: float = 0.0
    total: int = 0
    longest_gap: float = 0.0
    arrivals: list[float] = field(default_factory=list)

    def add(self, now: float, arrived: float | None = None) -> None:
        if self.first is None:
            self.first = now
        else:
            self.longest_gap = max(self.longest_gap, now - self.last)
        self.last = now
        self.arrivals.append(now if arrived is None else arrived)
        self.total += 1
        times = self.times
        times.append(now)
        horizon = now - 1.0
        while times[0] <= horizon:
            times.popleft()
        self.peak = max(self.peak, len(times))
        self.per_second[int(now)] += 1

    def longest_arrival_gap(self) -> float:
        ordered = sorted(self.arrivals)
        return max((b - a for a, b in pairwise(ordered)), default=0.0)


class Stats:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.requests: Counter[tuple[str, int]] = Counter()
        self.requests_by_channel: Counter[tuple[str, str, int]] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.quota_rejected: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.undelivered: Counter[str] = Counter()
        self._received: dict[tuple[str, str], _Window] = {}
        self._accepted: dict[tuple[str, str], _Window] = {}
        # (endpoint, channel id or "-"), and (endpoint, None) for all channels at once
        self._in_progress: Counter[tuple[str, str | None]] = Counter()
        self._most_in_progress: Counter[tuple[str, str | None]] = Counter()

    def now(self) -> float:
        """The time on the emulator's clock (what `arrived` is measured on)."""
        return self._clock.time()

    def record(
        self,
        channel_id: str | None,
        endpoint: str,
        status: int,
        *,
        accepted: bool | None = None,
        arrived: float | None = None,
    ) -> None:
        """Count one request, answered now. `accepted` is whether it was processed
        successfully, which can differ from the status the client saw when a fault struck
        after processing; `arrived`, when it came in (before any injected latency)."""
        self.requests[(endpoint, status)] += 1
        self.requests_by_channel[(channel_id or "-", endpoint, status)] += 1
        if channel_id is None:
            return
        now = self._clock.time()
        key = (channel_id, endpoint)
        self._window(self._received, key).add(now)
        if accepted if accepted is not None else 200 <= status < 300:
            self._window(self._accepted, key).add(now, arrived)

    def started(self, endpoint: str, channel_id: str | None) -> None:
        """A request came in (see `ended`)."""
        for key in ((endpoint, channel_id or "-"), (endpoint, None)):
            self._in_progress[key] += 1
            self._most_in_progress[key] = max(self._most_in_progress[key], self._in_progress[key])

    def ended(self, endpoint: str, channel_id: str | None) -> None:
        """A request `started` was answered (or its connection dropped)."""
        for key in ((endpoint, channel_id or "-"), (endpoint, None)):
            self._in_progress[key] -= 1

    def most_in_progress(self, endpoint: str, channel_id: str | None = None) -> int:
        """Most requests to `endpoint` in progress at once: of one channel, or of all (since
        the emulator started, or since `count_in_progress_afresh`)."""
        return self._most_in_progress[(endpoint, channel_id)]

    def count_in_progress_afresh(self) -> None:
        """`most_in_progress` counts from now: a test's own requests, not earlier tests'."""
        self._most_in_progress = Counter(self._in_progress)

    @staticmethod
    def _window(windows: dict[tuple[str, str], _Window], key: tuple[str, str]) -> _Window:
        window = windows.get(key)
        if window is None:
            window = windows[key] = _Window()
        return window

    def count(
        self, endpoint: str | None = None, status: int | None = None, channel_id: str | None = None
    ) -> int:
        return sum(
            n
            for (channel, ep, st), n in self.requests_by_channel.items()
            if (endpoint is None or ep == endpoint)
            and (status is None or st == status)
            and (channel_id is None or channel == channel_id)
        )

    def histogram(self, endpoint: str, channel_id: str, *, accepted: bool = True) -> dict[int, int]:
        """Requests per aligned epoch second (accepted ones only, or all received)."""
        window = (self._accepted if accepted else self._received).get((channel_id, endpoint))
        return dict(sorted(window.per_second.items())) if window else {}

    def peak_rate(
        self, endpoint: str, channel_id: str | None = None, *, accepted: bool = True
    ) -> int:
        """Most requests seen in any one-second window (sliding, not aligned)."""
        windows = self._accepted if accepted else self._received
        return max(
            (
                w.peak
                for (channel, ep), w in windows.items()
                if ep == endpoint and (channel_id is None or channel == channel_id)
            ),
            default=0,
        )

    def to_json(self) -> dict[str, Any]:
        endpoints = sorted({ep for ep, _ in self.requests})
        return {
            "requests": [
                {"channelId": ch, "endpoint": ep, "status": st, "count": n}
                for (ch, ep, st), n in sorted(self.requests_by_channel.items())
            ],
            "rateLimited": dict(self.rate_limited),
            "quotaRejected": dict(self.quota_rejected),
            "faults": dict(self.faults),
            "undelivered": dict(self.undelivered),
            "peakRates": {
                ep: {
                    "accepted": self.peak_rate(ep),
                    "received": self.peak_rate(ep, accepted=False),
                }
                for ep in endpoints
            },
            # Most requests in progress at once, of all channels together.
            "mostInProgress": {ep: self.most_in_progress(ep) for ep in endpoints},
            "acceptedPerSecond": {
                f"{ch}/{ep}": {str(s): n for s, n in sorted(w.per_second.items())}
                for (ch, ep), w in sorted(self._accepted.items())
            },
            # From the first accepted request to the last (seconds on the emulator's clock),
            # so a client's sending rate can be measured without its set-up; and the longest
            # pause in between, from one accepted request's answer to the next one's
            # (`longestGap`) and from one's arrival to the next one's (`longestArrivalGap`:
            # the same without injected latency), so a client's stalls can be measured.
            "acceptedSpans": {
                f"{ch}/{ep}": {
                    "first": w.first,
                    "last": w.last,
                    "count": w.total,
                    "longestGap": w.longest_gap,
                    "longestArrivalGap": w.longest_arrival_gap(),
                }
                for (ch, ep), w in sorted(self._accepted.items())
            },
        }
