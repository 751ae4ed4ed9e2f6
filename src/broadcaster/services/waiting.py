"""Waiting in the background loops (dispatch, firing, upkeep, statistics): until woken or for a
while, and how long to sleep before the next due work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime


async def wait_or_wake(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. Not `asyncio.wait_for`, which on Python 3.11 can
    swallow a cancellation that arrives as the event is set, leaving a task that never stops."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def seconds_until(due: datetime | None, now: datetime, poll: float, soonest: float) -> float:
    """How long a loop sleeps: until `due` (None: nothing due), never longer than its safety
    `poll` nor shorter than `soonest` (work due now or overdue is looked at after that)."""
    if due is None:
        return poll
    return min(poll, max(soonest, (due - now).total_seconds()))


async def run_due(
    step: Callable[[], Awaitable[float]],
    wake: asyncio.Event,
    log: logging.Logger,
    what: str,
    *,
    retry: float = 5.0,
    running: Callable[[], bool] = lambda: True,
) -> None:
    """A background loop: `step()` does what is due and says how long to sleep (0: look again
    at once); the sleep ends early when `wake` is set. A failing step is logged (`what` it was
    doing) and tried again after `retry` seconds. Runs while `running()`."""
    while running():
        wake.clear()  # before looking: a wake-up from now on cuts the sleep below short
        try:
            delay = await step()
        except Exception:
            log.exception("%s failed", what)
            delay = retry
        if delay > 0:
            await wait_or_wake(wake, delay)
