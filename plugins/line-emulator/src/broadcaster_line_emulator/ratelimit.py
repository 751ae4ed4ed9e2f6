"""Per-channel, per-endpoint token buckets at LINE's published rates.

LINE applies each limit per channel and per endpoint (method + path), regardless of parameters
or source IP. A bucket holds at most one window's worth of requests and refills continuously."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock


@dataclass(frozen=True, slots=True)
class Rate:
    """`requests` per `per_seconds`, e.g. Rate(200, 1.0) or Rate(60, 3600.0)."""

    requests: int
    per_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds <= 0:
            raise ValueError("a rate needs at least one request per positive period")

    @property
    def per_second(self) -> float:
        return self.requests / self.per_seconds


# https://developers.line.biz/en/reference/messaging-api/#rate-limits and each endpoint's
# "Rate limit" section: multicast 200/s, narrowcast, broadcast and statistics per unit 60/h,
# everything else 2,000/s.
DEFAULT_RATES: Mapping[str, Rate] = {
    "multicast": Rate(200),
    "push": Rate(2_000),
    "broadcast": Rate(60, 3_600.0),
    "followers": Rate(2_000),
    "profile": Rate(2_000),
    "bot_info": Rate(2_000),
    "quota": Rate(2_000),
    "quota_consumption": Rate(2_000),
    "get_webhook_endpoint": Rate(2_000),
    "set_webhook_endpoint": Rate(2_000),
    "test_webhook_endpoint": Rate(2_000),
    "validate_multicast": Rate(2_000),
    "aggregation_info": Rate(2_000),
    "aggregation_list": Rate(2_000),
    "statistics_per_unit": Rate(60, 3_600.0),
}


_EPSILON = 1e-6


class TokenBucket:
    __slots__ = ("_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate: Rate, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = float(rate.requests)
        self._last = clock.monotonic()

    @property
    def rate(self) -> Rate:
        return self._rate

    def try_acquire(self) -> bool:
        now = self._clock.monotonic()
        elapsed = now - self._last
        self._last = now
        capacity = float(self._rate.requests)
        if elapsed > 0:
            self._tokens = min(capacity, self._tokens + elapsed * self._rate.per_second)
        if self._tokens >= 1.0 - _EPSILON:  # clock arithmetic in floats loses a little
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False


class RateLimiter:
    """All buckets of an emulator, created on first use."""

    def __init__(self, clock: Clock, rates: Mapping[str, Rate] | None = None) -> None:
        self._clock = clock
        self._rates = dict(DEFAULT_RATES)
        if rates:
            self._rates.update(rates)
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def rate(self, endpoint: str) -> Rate | None:
        return self._rates.get(endpoint)

    def set_rate(self, endpoint: str, rate: Rate | None) -> None:
        """Change (or with None, lift) an endpoint's limit; its buckets start full again."""
        if rate is None:
            self._rates.pop(endpoint, None)
        else:
            self._rates[endpoint] = rate
        for key in [key for key in self._buckets if key[1] == endpoint]:
            del self._buckets[key]

    def allow(self, channel_id: str, endpoint: str) -> bool:
        rate = self._rates.get(endpoint)
        if rate is None:
            return True
        key = (channel_id, endpoint)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, self._clock)
        return bucket.try_acquire()
