"""The emulator's shared state, handed to request handlers and the control API, plus the
observer hook that sees every Messaging API request and response."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .clock import Clock
from .faults import NO_FAULT, Decision, FaultInjector
from .ids import IdFactory
from .ratelimit import RateLimiter
from .state import Account, Directory, IssuedTokens
from .stats import Stats

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One Messaging API request and what the emulator answered.

    `status` is None when the connection was closed without a response (an injected reset);
    the response fields are then empty. `request` and `response` are the live aiohttp objects
    for observers that want more than the plain fields."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    response_headers: Mapping[str, str]
    response_body: bytes
    endpoint: str
    channel_id: str | None
    request: web.Request
    response: web.StreamResponse | None


Observer = Callable[[Exchange], None]


@dataclass(eq=False)
class Runtime:
    clock: Clock
    ids: IdFactory
    directory: Directory
    limiter: RateLimiter
    stats: Stats
    retry_key_ttl: float
    observers: list[Observer] = field(default_factory=list)
    tokens: IssuedTokens = field(default_factory=IssuedTokens)  # issued through OAuth
    global_faults: FaultInjector | None = None
    channel_faults: dict[str, FaultInjector] = field(default_factory=dict)
    observer_errors: list[BaseException] = field(default_factory=list)

    def decide(self, endpoint: str, account: Account | None) -> Decision:
        decision = self.global_faults.decide(endpoint) if self.global_faults else NO_FAULT
        if account is not None:
            injector = self.channel_faults.get(account.channel_id)
            if injector is not None:
                decision = decision.combine(injector.decide(endpoint))
        return decision

    def notify(self, exchange: Exchange) -> None:
        for observer in list(self.observers):
            try:
                observer(exchange)
            except Exception as exc:  # an observer must not change what the client sees
                log.exception("LINE emulator observer failed")
                self.observer_errors.append(exc)
