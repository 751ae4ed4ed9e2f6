"""Channels' message quotas as estimates show them.

The admin form estimates on every change of the audience, for many merchants at once, and each
estimate shows the channel's quota: asking the channel every time (LINE: two requests) cost
more than the count itself. A quota read is kept for a few seconds per channel, and the
estimates that ask at the same moment share one read. A failed read is not kept. SendBroadcast
never reads quotas from here: it checks the channel's own answer. Scheduled broadcasts firing
at the same moment share one read of their channel's, kept for a second (services.sending).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from broadcaster.channels import Channel, Quota

TTL_SECONDS = 5.0


class QuotaCache:
    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        # channel id -> (read by this instance, good until, quota); a channel whose credentials
        # changed has a new instance, and is read afresh.
        self._kept: dict[str, tuple[Channel, float, Quota]] = {}
        self._reading: dict[str, tuple[Channel, asyncio.Future[Quota]]] = {}

    async def quota(self, channel_id: str, instance: Channel) -> Quota:
        kept = self._kept.get(channel_id)
        if kept is not None and kept[0] is instance and self._clock() < kept[1]:
            return kept[2]
        reading = self._reading.get(channel_id)
        if reading is None or reading[0] is not instance:
            future = asyncio.ensure_future(self._read(channel_id, instance))
            # Retrieved here too, in case every caller waiting on it was cancelled.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            reading = (instance, future)
            self._reading[channel_id] = reading
        return await asyncio.shield(reading[1])

    async def _read(self, channel_id: str, instance: Channel) -> Quota:
        try:
            quota = await instance.quota()
            self._kept[channel_id] = (instance, self._clock() + self._ttl, quota)
            return quota
        finally:
            reading = self._reading.get(channel_id)
            if reading is not None and reading[0] is instance:
                del self._reading[channel_id]

    def forget(self, channel_id: str) -> None:
        """Read the channel's quota afresh next time: something was just sent on it."""
        self._kept.pop(channel_id, None)
