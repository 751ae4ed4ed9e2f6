"""The quota shown by estimates: read once for callers asking together, kept a few seconds per
channel instance, never kept when the read failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcaster.channels import ChannelUnavailable, Quota
from broadcaster.services.quotas import QuotaCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A channel whose quota reads are counted; `fail` makes the next read fail."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail = False

    async def quota(self) -> Quota:
        self.reads += 1
        await asyncio.sleep(0.01)
        if self.fail:
            self.fail = False
            raise ChannelUnavailable("down")
        return Quota(limited=True, limit=1000, used=self.reads)


async def test_callers_asking_together_share_one_read() -> None:
    cache, channel = QuotaCache(clock=Clock()), Counting()
    got = await asyncio.gather(*(cache.quota("ch", channel) for _ in range(50)))  # type: ignore[arg-type]
    assert channel.reads == 1
    assert {q.used for q in got} == {1}


async def test_a_read_is_kept_for_the_ttl_only() -> None:
    clock, channel = Clock(), Counting()
    cache = QuotaCache(ttl=5, clock=clock)
    quota: Any = await cache.quota("ch", channel)  # type: ignore[arg-type]
    clock.now = 4.9
    assert (await cache.quota("ch", channel)) == quota  # type: ignore[arg-type]
    clock.now = 5.1
    assert (await cache.quota("ch", channel)).used == 2  # type: ignore[arg-type]


async def test_a_new_channel_instance_is_read_afresh() -> None:
    cache, first, second = QuotaCache(clock=Clock()), Counting(), Counting()
    await cache.quota("ch", first)  # type: ignore[arg-type]
    await cache.quota("ch", second)  # type: ignore[arg-type]
    assert (first.reads, second.reads) == (1, 1)


async def test_a_failed_read_is_not_kept() -> None:
    cache, channel = QuotaCache(clock=Clock()), Counting()
    channel.fail = True
    with pytest.raises(ChannelUnavailable):
        await cache.quota("ch", channel)  # type: ignore[arg-type]
    assert (await cache.quota("ch", channel)).used == 2  # type: ignore[arg-type]


async def test_a_forgotten_channel_is_read_afresh_within_the_ttl() -> None:
    cache, channel = QuotaCache(clock=Clock()), Counting()
    await cache.quota("ch", channel)  # type: ignore[arg-type]
    cache.forget("ch")  # something was sent on it (a test send)
    assert (await cache.quota("ch", channel)).used == 2  # type: ignore[arg-type]
    cache.forget("never-read")  # nothing kept: nothing to do
