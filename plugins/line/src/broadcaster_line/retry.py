"""Retries for the read calls (bot info, follower ids, profiles, quota).

A transient failure (network error, timeout, 5xx, 429) is retried a few times with exponential
backoff and full jitter, honouring `Retry-After`; then the call gives up with
`ChannelUnavailable`. A 401 always means the token was refused: `CredentialsInvalid`. Any other
answer is returned for the caller to interpret. Sends are not retried here: the core's
dispatcher owns their retries (with the batch's retry key)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from broadcaster.channels import ChannelUnavailable, CredentialsInvalid
from broadcaster_line.client import LineReply

NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)

CREDENTIALS_REFUSED = (
    "LINE refused the channel access token. Issue a new long-lived channel access token in the "
    "LINE Developers Console (Messaging API tab) and reconnect the channel."
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base_delay: float = 0.25  # seconds before the first retry; doubles each time
    max_delay: float = 5.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number `retry` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay * 4)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return random.uniform(0.0, ceiling)  # full jitter


DEFAULT_RETRY = RetryPolicy()


def is_transient(status: int) -> bool:
    return status == 429 or status >= 500


async def call_with_retries(
    call: Callable[[], Awaitable[LineReply]], what: str, policy: RetryPolicy = DEFAULT_RETRY
) -> LineReply:
    """The first non-transient reply of `call`; raises as described in the module docstring.

    `what` names the call in merchant-safe messages ("reading the follower list")."""
    problem = ""
    for attempt in range(1, max(policy.attempts, 1) + 1):
        retry_after: float | None = None
        try:
            reply = await call()
        except NETWORK_ERRORS as exc:
            problem = f"network error ({type(exc).__name__})"
        else:
            if reply.status == 401:
                raise CredentialsInvalid(CREDENTIALS_REFUSED)
            if not is_transient(reply.status):
                return reply
            problem = f"HTTP {reply.status}: {reply.error.message or 'no message'}"
            retry_after = reply.retry_after
        if attempt < policy.attempts:
            await asyncio.sleep(policy.delay(attempt, retry_after))
    raise ChannelUnavailable(
        f"LINE could not be reached while {what} ({problem}, {policy.attempts} attempts); "
        "try again later"
    )
