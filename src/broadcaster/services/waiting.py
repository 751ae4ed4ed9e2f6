"""Waiting in the background loops (dispatch, firing, upkeep, statistics): until woken or for a
while, and how long to sleep before the next due work."""

from __future__ import annotations

import asyncio
import contextlib
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
