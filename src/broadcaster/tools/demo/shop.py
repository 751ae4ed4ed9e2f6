"""The demo shop every step of the demo works on, and the settings the steps share."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from broadcaster_client import Client, retry

from broadcaster.tools.demo.story import Story

if TYPE_CHECKING:
    from broadcaster.tools.demo.stack import Stack

T = TypeVar("T")

DEFAULT_FOLLOWERS = 50_000
SEED = 20240601  # the same shop, friends and history on every run
POLL_SECONDS = 0.1
CALL_TIMEOUT = 60.0
IDEMPOTENT_RETRIES = 3  # of a merge or an update a busy database refused (deadlock)
# Failures a retry may cure: a database deadlock surfaces as INTERNAL.
_RETRYABLE = frozenset(
    {grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}
)


class DemoFailed(Exception):
    """The demo could not go on; the message says what went wrong."""


@dataclass
class Shop:
    """A merchant, the service it uses (through the client) and the story told about it."""

    stack: Stack  # the service and the LINE emulator, in this process
    client: Client
    story: Story
    merchant: str  # merchants/…
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))

    def idempotent(self, method: Callable[..., T], request: Any) -> T:
        """Call `method`, again after a short pause when the server failed in a way a retry
        may cure; only for calls that are safe to repeat."""
        return retry(
            method,
            request,
            codes=_RETRYABLE,
            attempts=IDEMPOTENT_RETRIES + 1,
            timeout=CALL_TIMEOUT,
        )
