"""When to try a batch again, and when never to.

A batch keeps its idempotency key for every attempt. A channel remembers a key only for a while
(LINE: 24 hours); past that, a retry with the key could deliver twice. So whether a batch may be
retried late depends on whether any attempt so far may have been accepted:

- none may have (every answer was a definite refusal: "too many requests", recipients named
  invalid): a retry that would land past the window gets a fresh key (`Rekey`), nothing can be
  delivered twice;
- one may have (a timeout, a reset, a 5xx, an answer lost with a crash, or a history this process
  does not know): past the window the batch is not retried but marked outcome-unknown
  (`OutcomeUnknown`) for an operator to decide.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_DELAY = 0.5  # seconds before the first retry, before jitter
MAX_DELAY = 60.0
# Stop short of the window's end: an attempt must reach the channel while it still knows the key.
WINDOW_MARGIN = 0.9


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again with the same key after `delay` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Rekey:
    """Nothing was accepted: start over with a fresh key, `delay` seconds from now."""

    delay: float


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    reason: str


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(MAX, BASE * 2^(attempts-1))]."""
    ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** max(attempts - 1, 0))
    return rng.uniform(0, ceiling)


def next_step(
    *,
    attempts: int,
    first_attempt_age: float,
    key_window: float,
    retry_after: float | None,
    rng: random.Random,
    maybe_accepted: bool = True,
) -> Retry | Rekey | OutcomeUnknown:
    """After a transient failure of attempt number `attempts`, whose first attempt was
    `first_attempt_age` seconds ago: retry (after the channel's Retry-After if it gave one,
    else a jittered backoff) while the channel still remembers the key. Past that, start over
    with a fresh key if no attempt `maybe_accepted`, else give the batch up as unknown."""
    delay = retry_after if retry_after is not None else backoff(attempts, rng)
    if first_attempt_age + delay < key_window * WINDOW_MARGIN:
        return Retry(delay)
    if not maybe_accepted:
        return Rekey(delay)
    return OutcomeUnknown(
        "KEY_EXPIRED: the channel may have accepted an earlier attempt; a retry now could "
        "message these recipients twice. Check the channel's records before resending."
    )
