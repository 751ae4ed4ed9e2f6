"""A million followers and a hundred thousand recipients a second must stay cheap."""

from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp
from broadcaster_line_emulator import FollowerRegistry, LineEmulator, Rate
from emulator_support import LineApi, text


def test_seeding_a_million_followers_is_instant_and_reversible() -> None:
    registry = FollowerRegistry()
    started = time.perf_counter()
    registry.add_generated(1_000_000, seed="big")
    elapsed = time.perf_counter() - started

    assert elapsed < 0.05
    assert len(registry) == 1_000_000
    rng = random.Random(1)
    for position in rng.sample(range(1_000_000), 2_000):
        user_id = registry.user_id_at(position)
        assert registry.position(user_id) == position
    assert registry.position("U" + "0" * 32) is None


def test_ids_are_deterministic_per_seed_and_distinct_across_seeds() -> None:
    a, b, c = FollowerRegistry(), FollowerRegistry(), FollowerRegistry()
    a.add_generated(10_000, seed=1)
    b.add_generated(10_000, seed=1)
    c.add_generated(10_000, seed=2)

    ids_a = [a.user_id_at(p) for p in range(10_000)]
    assert ids_a == [b.user_id_at(p) for p in range(10_000)]
    assert len(set(ids_a)) == 10_000
    assert not set(ids_a) & {c.user_id_at(p) for p in range(10_000)}


def test_a_second_block_extends_the_first() -> None:
    registry = FollowerRegistry()
    first = registry.add_generated(300, seed="a")
    second = registry.add_generated(200, seed="b")

    assert (first, second) == (range(0, 300), range(300, 500))
    assert registry.position(registry.user_id_at(450)) == 450
    assert registry.user_id_at(299) != registry.user_id_at(300)


async def test_multicast_throughput_and_compact_records() -> None:
    async with LineEmulator(seed="bench") as emulator:  # no observer: measure the emulator alone
        shop = emulator.add_account(followers=1_000_000, follower_seed="bench")
        emulator.set_rate("multicast", Rate(1_000_000))
        batches = [
            [shop.followers.user_id_at(p) for p in range(i, i + 500)]
            for i in range(0, 100_000, 500)
        ]
        limit = asyncio.Semaphore(16)
        async with aiohttp.ClientSession(emulator.base_url) as http:
            api = LineApi(http, shop.access_token)

            async def send(batch: list[str]) -> int:
                async with limit:
                    return (await api.multicast(batch, text("bench"))).status

            started = time.perf_counter()
            statuses = await asyncio.gather(*(send(batch) for batch in batches))
            elapsed = time.perf_counter() - started

    assert statuses == [200] * len(batches)
    per_second = 100_000 / elapsed
    print(f"\nmulticast: {len(batches) / elapsed:.0f} req/s, {per_second:,.0f} recipients/s")
    assert per_second > 20_000  # the benchmark needs 100,000/s on a quiet machine; leave headroom
    log = shop.deliveries
    assert log.total_deliveries == 100_000 and log.users_reached() == 100_000
    assert log.positions_received_more_than_once() == []
    assert sys.getsizeof(log.sends[0].recipients) < 500 * 5 + 100  # about four bytes each
