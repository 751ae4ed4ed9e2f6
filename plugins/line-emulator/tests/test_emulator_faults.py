"""Injected faults: errors, resets, latency, 429 bursts; per channel or global; seeded."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from broadcaster_line_emulator import Account, Faults, LineEmulator, Phase
from broadcaster_line_emulator.faults import FaultInjector
from emulator_support import LineApi, new_retry_key


async def test_error_rate_one_fails_every_request_with_the_listed_statuses(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(Faults(error_rate=1.0, error_statuses=(500, 502, 503), seed=3))
    user = emulator.follower_ids(shop)[:1]

    replies = [await api.multicast(user) for _ in range(30)]

    assert {r.status for r in replies} == {500, 502, 503}
    assert all(r.body["message"] for r in replies)
    assert shop.deliveries.total_deliveries == 0
    assert sum(emulator.stats.faults[s] for s in ("500", "502", "503")) == 30


def test_the_same_seed_replays_the_same_faults() -> None:
    faults = Faults(
        error_rate=0.3, reset_rate=0.2, spike_probability=0.5, spike_latency=0.1, seed=42
    )

    def run(settings: Faults) -> list[tuple[int | None, bool, float]]:
        injector = FaultInjector(settings)
        return [(d.error_status, d.reset, d.delay) for d in map(injector.decide, ["push"] * 200)]

    first, second = run(faults), run(faults)
    other_seed = run(
        Faults(error_rate=0.3, reset_rate=0.2, spike_probability=0.5, spike_latency=0.1, seed=43)
    )

    assert first == second
    assert other_seed != first
    errors = sum(1 for status, _, _ in first if status)
    assert 35 <= errors <= 85  # about 30% of 200
    assert any(reset for _, reset, _ in first)
    assert any(delay for _, _, delay in first) and not all(delay for _, _, delay in first)


async def test_error_after_acceptance_delivers_and_a_retry_gets_409(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(
        Faults(error_rate=1.0, error_statuses=(500,), error_phase=Phase.AFTER), shop
    )
    to = emulator.follower_ids(shop)[:20]
    key = new_retry_key()

    lost = await api.multicast(to, retry_key=key)
    emulator.set_faults(None, shop)
    retried = await api.multicast(to, retry_key=key)

    assert lost.status == 500
    assert retried.status == 409
    assert all(emulator.times_received(shop, user) == 1 for user in to)
    assert emulator.stats.peak_rate("multicast", shop.channel_id) == 1  # accepted once


async def test_reset_before_processing_delivers_nothing(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(Faults(reset_rate=1.0))

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.multicast(emulator.follower_ids(shop)[:5])

    emulator.clear_faults()
    assert (await api.bot_info()).status == 200
    assert shop.deliveries.total_deliveries == 0
    assert emulator.stats.count("multicast", 0) == 1  # status 0: reset


async def test_reset_after_processing_has_delivered(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(
        Faults(reset_rate=1.0, reset_phase=Phase.AFTER, endpoints=frozenset({"push"}))
    )
    user = emulator.follower_ids(shop)[0]

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.push(user)

    assert emulator.times_received(shop, user) == 1
    assert (await api.bot_info()).status == 200  # other endpoints are untouched


async def test_fixed_latency_and_spikes(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(Faults(latency=0.15))
    started = time.perf_counter()
    await api.bot_info()
    fixed = time.perf_counter() - started

    emulator.set_faults(Faults(spike_probability=1.0, spike_latency=0.2))
    started = time.perf_counter()
    reply = await api.bot_info()
    spiked = time.perf_counter() - started

    assert fixed >= 0.15
    assert spiked >= 0.2
    assert reply.status == 200
    assert emulator.stats.faults["latency"] == 1 and emulator.stats.faults["spike"] == 1


async def test_burst_of_429s_then_normal_service(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(Faults(burst_429=3), shop)
    user = emulator.follower_ids(shop)[:1]

    statuses = [(await api.multicast(user)).status for _ in range(5)]

    assert statuses == [429, 429, 429, 200, 200]
    assert emulator.stats.faults["429"] == 3
    assert emulator.stats.rate_limited["multicast"] == 0  # not the bucket's doing


async def test_burst_429_uses_lines_rate_limit_message(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_faults(Faults(burst_429=1))

    reply = await api.quota()

    assert (reply.status, reply.body) == (
        429,
        {"message": "The API rate limit has been exceeded. Try again later."},
    )


async def test_channel_faults_leave_other_channels_alone(
    emulator: LineEmulator, shop: Account, api: LineApi, http: aiohttp.ClientSession
) -> None:
    other = emulator.add_account()
    emulator.set_faults(Faults(error_rate=1.0), shop)

    assert (await api.bot_info()).status >= 500
    assert (await LineApi(http, other.access_token).bot_info()).status == 200
    assert emulator.faults(shop) == Faults(error_rate=1.0)
    assert emulator.faults() is None


def test_invalid_fault_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError):
        Faults(error_statuses=(404,))
    with pytest.raises(ValueError):
        Faults.from_json({"errorRate": 0.1, "explode": True})
    assert Faults.from_json({"errorRate": 0.5, "burst429": 2, "endpoints": ["push"]}) == Faults(
        error_rate=0.5, burst_429=2, endpoints=frozenset({"push"})
    )


async def test_requests_in_progress_at_once_are_counted_per_channel_and_in_all(
    emulator: LineEmulator, shop: Account, api: LineApi, http: aiohttp.ClientSession
) -> None:
    other = emulator.add_account()
    emulator.set_faults(Faults(latency=0.3))  # long enough for all of them to overlap
    calls = [api.bot_info() for _ in range(3)] + [
        LineApi(http, other.access_token).bot_info() for _ in range(2)
    ]
    replies = await asyncio.gather(*calls)
    await api.bot_info()  # alone, afterwards

    assert all(r.status == 200 for r in replies)
    assert emulator.stats.most_in_progress("bot_info", shop.channel_id) == 3
    assert emulator.stats.most_in_progress("bot_info", other.channel_id) == 2
    assert emulator.stats.most_in_progress("bot_info") == 5
    assert emulator.stats.to_json()["mostInProgress"]["bot_info"] == 5
    emulator.stats.count_in_progress_afresh()
    await api.bot_info()
    assert emulator.stats.most_in_progress("bot_info") == 1
