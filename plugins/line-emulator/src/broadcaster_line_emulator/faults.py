"""Fault injection: slow answers, latency spikes, 5xx errors, dropped connections and bursts of
429s, globally or for one channel, reproducible from a seed.

A fault can strike before the request is processed (nothing happens) or after it (the request
was accepted, messages delivered and the retry key remembered, but the client never learns it):
the second kind is exactly what `X-Line-Retry-Key` exists for."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from .responses import SERVER_ERRORS


class Phase(StrEnum):
    BEFORE = "before"
    AFTER = "after"


@dataclass(frozen=True)
class Faults:
    """What to inject. Rates and probabilities are per request, between 0 and 1."""

    latency: float = 0.0
    """Seconds added to every request."""
    spike_probability: float = 0.0
    spike_latency: float = 0.0
    """Extra seconds for a request that draws a spike."""
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    error_phase: Phase = Phase.BEFORE
    reset_rate: float = 0.0
    """Share of requests whose connection is closed without any response."""
    reset_phase: Phase = Phase.BEFORE
    burst_429: int = 0
    """The next N requests get LINE's rate-limit 429."""
    endpoints: frozenset[str] | None = None
    """Endpoint names the faults apply to (e.g. {"multicast"}); None means all."""
    seed: int = 0

    def __post_init__(self) -> None:
        # "after" works as well as Phase.AFTER (the frozen dataclass is set through object).
        for name in ("error_phase", "reset_phase"):
            object.__setattr__(self, name, Phase(getattr(self, name)))
        for name in ("spike_probability", "error_rate", "reset_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if min(self.latency, self.spike_latency) < 0 or self.burst_429 < 0:
            raise ValueError("latencies and burst_429 must not be negative")
        bad = [s for s in self.error_statuses if s not in SERVER_ERRORS]
        if bad or not self.error_statuses:
            raise ValueError(f"error_statuses must be among {sorted(SERVER_ERRORS)}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {_snake(key): value for key, value in data.items()}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "error_statuses" in values:
            values["error_statuses"] = tuple(int(s) for s in values["error_statuses"])
        if values.get("endpoints") is not None:
            values["endpoints"] = frozenset(values["endpoints"])
        for name in ("error_phase", "reset_phase"):
            if name in values:
                values[name] = Phase(values[name])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        data["endpoints"] = sorted(self.endpoints) if self.endpoints is not None else None
        data["error_phase"] = self.error_phase.value
        data["reset_phase"] = self.reset_phase.value
        return data


def _snake(name: str) -> str:
    """`errorRate` -> `error_rate`, so the control API can speak camelCase like LINE."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[a-zA-Z])(?=\d)", "_", name).lower()


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one request."""

    delay: float = 0.0
    error_status: int | None = None
    error_phase: Phase = Phase.BEFORE
    reset: bool = False
    reset_phase: Phase = Phase.BEFORE
    rate_limited: bool = False
    kinds: tuple[str, ...] = field(default=())

    def combine(self, other: Decision) -> Decision:
        """Delays add up; the first error, reset or 429 wins."""
        first = self if (self.error_status or self.reset or self.rate_limited) else other
        return Decision(
            delay=self.delay + other.delay,
            error_status=first.error_status,
            error_phase=first.error_phase,
            reset=first.reset,
            reset_phase=first.reset_phase,
            rate_limited=first.rate_limited,
            kinds=self.kinds + other.kinds,
        )


NO_FAULT = Decision()


class FaultInjector:
    """One `Faults` setting with its own random stream and 429-burst countdown."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._burst_left = faults.burst_429

    @property
    def burst_left(self) -> int:
        return self._burst_left

    def decide(self, endpoint: str) -> Decision:
        f = self.faults
        if f.endpoints is not None and endpoint not in f.endpoints:
            return NO_FAULT
        # Draw the same four numbers for every request so one setting replays identically.
        spike, error, reset, pick = (self._rng.random() for _ in range(4))
        kinds: list[str] = []
        delay = f.latency
        if f.latency:
            kinds.append("latency")
        if spike < f.spike_probability:
            delay += f.spike_latency
            kinds.append("spike")
        if self._burst_left > 0:
            self._burst_left -= 1
            kinds.append("429")
            return Decision(delay=delay, rate_limited=True, kinds=tuple(kinds))
        if error < f.error_rate:
            status = f.error_statuses[int(pick * len(f.error_statuses))]
            kinds.append(str(status))
            return Decision(
                delay=delay, error_status=status, error_phase=f.error_phase, kinds=tuple(kinds)
            )
        if reset < f.reset_rate:
            kinds.append("reset")
            return Decision(delay=delay, reset=True, reset_phase=f.reset_phase, kinds=tuple(kinds))
        return Decision(delay=delay, kinds=tuple(kinds))
