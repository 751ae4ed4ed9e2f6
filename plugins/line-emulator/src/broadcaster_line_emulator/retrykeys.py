"""`X-Line-Retry-Key` memory: a key whose request was accepted is answered with 409 and the
original request id for 24 hours; after that LINE treats the key as new."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock

RETRY_KEY_TTL = 24 * 60 * 60.0


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    request_id: str
    accepted_at: float
    sent_messages: tuple[Mapping[str, str], ...] | None = None


class RetryKeyStore:
    """Accepted retry keys of one channel, forgotten `ttl` seconds after acceptance."""

    def __init__(self, clock: Clock, ttl: float = RETRY_KEY_TTL) -> None:
        self._clock = clock
        self.ttl = ttl
        self._accepted: OrderedDict[str, AcceptedRequest] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._accepted)

    def lookup(self, key: str) -> AcceptedRequest | None:
        self._expire()
        return self._accepted.get(key.lower())

    def remember(
        self, key: str, request_id: str, sent_messages: tuple[Mapping[str, str], ...] | None = None
    ) -> None:
        key = key.lower()
        self._accepted.pop(key, None)
        self._accepted[key] = AcceptedRequest(request_id, self._clock.monotonic(), sent_messages)

    def _expire(self) -> None:
        horizon = self._clock.monotonic() - self.ttl
        accepted = self._accepted
        while accepted:
            key, first = next(iter(accepted.items()))
            if first.accepted_at > horizon:
                break
            del accepted[key]
