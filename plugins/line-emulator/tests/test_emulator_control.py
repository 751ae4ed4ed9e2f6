"""The `/_emulator/` HTTP control API, as a separate process would use it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from broadcaster_line_emulator import LineEmulator, ManualClock, verify
from broadcaster_line_emulator.stats import Stats
from emulator_support import LineApi


async def test_create_account_seed_followers_and_send(
    emulator: LineEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        "/_emulator/accounts",
        json={
            "tier": "verified",
            "accessToken": "token-1",
            "channelSecret": "secret-1",
            "channelId": "1650000001",
            "displayName": "Market",
            "quota": 900,
            "followers": 1_000,
            "followerSeed": "market",
        },
    ) as resp:
        assert resp.status == 201
        created = await resp.json()
    async with http.post(
        "/_emulator/accounts/1650000001/followers", json={"count": 500, "seed": "more"}
    ) as resp:
        grown = await resp.json()

    api = LineApi(http, "token-1")
    ids = await api.all_followers()
    await api.multicast(ids[:400])
    async with http.get(
        "/_emulator/accounts/1650000001/deliveries", params={"userId": ids[0]}
    ) as resp:
        deliveries = await resp.json()
    async with http.get("/_emulator/accounts/1650000001/deliveries/summary") as resp:
        summary = await resp.json()

    assert created["channelId"] == "1650000001"
    assert created["accessToken"] == "token-1" and created["channelSecret"] == "secret-1"
    assert created["quota"] == {"limit": 900, "usage": 0, "remaining": 900}
    assert created["bot"]["displayName"] == "Market"
    assert grown == {"added": 500, "followers": 1_500}
    assert len(ids) == 1_500
    assert [d["endpoint"] for d in deliveries] == ["multicast"]
    assert deliveries[0]["messages"] == [{"type": "text", "text": "Hello from the shop"}]
    assert summary["sends"] == 1 and summary["usersReached"] == 400
    assert summary["usersReachedMoreThanOnce"] == 0
    assert summary["quota"]["usage"] == 400


async def test_quota_tier_block_token_and_rates(
    emulator: LineEmulator, http: aiohttp.ClientSession
) -> None:
    shop = emulator.add_account(tier="none", followers=10)
    base = f"/_emulator/accounts/{shop.channel_id}"
    user = emulator.follower_ids(shop)[0]

    async with http.put(base + "/quota", json={"limit": 5, "usage": 2}) as resp:
        assert await resp.json() == {"limit": 5, "usage": 2, "remaining": 3}
    async with http.put(base + "/tier", json={"tier": "premium"}) as resp:
        assert (await resp.json())["tier"] == "premium"
    async with http.post(base + "/block", json={"userIds": [user]}) as resp:
        assert (await resp.json())["blocked"] == 1
    async with http.get(base + "/followers") as resp:
        assert user not in (await resp.json())["userIds"]
    async with http.post(base + "/unblock", json={"userIds": [user]}) as resp:
        assert (await resp.json())["blocked"] == 0
    async with http.post(base + "/token", json={"accessToken": "fresh"}) as resp:
        assert await resp.json() == {"accessToken": "fresh"}
    async with http.put(
        "/_emulator/rates/bot_info", json={"requests": 1, "perSeconds": 60}
    ) as resp:
        assert resp.status == 200

    api = LineApi(http, "fresh")
    assert (await api.followers()).status == 200
    assert [(await api.bot_info()).status for _ in range(2)] == [200, 429]
    async with http.delete(base + "/token") as resp:
        assert resp.status == 200
    assert (await api.quota()).status == 401


async def test_faults_over_http(emulator: LineEmulator, http: aiohttp.ClientSession) -> None:
    shop = emulator.add_account()
    api = LineApi(http, shop.access_token)

    async with http.put(
        f"/_emulator/accounts/{shop.channel_id}/faults",
        json={"errorRate": 1.0, "errorStatuses": [503]},
    ) as resp:
        assert (await resp.json())["faults"]["error_statuses"] == [503]
    failed = await api.bot_info()
    async with http.delete(f"/_emulator/accounts/{shop.channel_id}/faults"):
        pass
    async with http.put("/_emulator/faults", json={"burst429": 1}) as resp:
        assert resp.status == 200
    limited = await api.bot_info()
    recovered = await api.bot_info()
    async with http.put("/_emulator/faults", json={"errorRate": 2}) as resp:
        invalid = resp.status

    assert (failed.status, limited.status, recovered.status) == (503, 429, 200)
    assert invalid == 400


async def test_stats_and_unknown_channels(
    emulator: LineEmulator, http: aiohttp.ClientSession
) -> None:
    shop = emulator.add_account(followers=3)
    api = LineApi(http, shop.access_token)
    await api.multicast(emulator.follower_ids(shop))
    await LineApi(http, "nope").bot_info()

    async with http.get("/_emulator/stats") as resp:
        stats = await resp.json()
    async with http.get("/_emulator/accounts/999") as resp:
        missing = (resp.status, await resp.json())
    async with http.get("/_emulator/health") as resp:
        health = await resp.json()

    assert {
        "channelId": shop.channel_id,
        "endpoint": "multicast",
        "status": 200,
        "count": 1,
    } in stats["requests"]
    assert {"channelId": "-", "endpoint": "bot_info", "status": 401, "count": 1} in stats[
        "requests"
    ]
    assert stats["peakRates"]["multicast"] == {"accepted": 1, "received": 1}
    assert sum(stats["acceptedPerSecond"][f"{shop.channel_id}/multicast"].values()) == 1
    span = stats["acceptedSpans"][f"{shop.channel_id}/multicast"]
    assert span["count"] == 1 and span["first"] == span["last"] > 0
    assert span["longestGap"] == span["longestArrivalGap"] == 0.0
    assert missing == (404, {"error": "no channel 999"})
    assert health == {"ok": True, "accounts": 1}


@pytest.fixture
async def bot_server() -> AsyncIterator[tuple[str, list[tuple[str, bytes]]]]:
    seen: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.headers.get("x-line-signature", ""), await request.read()))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/hook", seen
    await runner.cleanup()


async def test_webhooks_over_http(
    emulator: LineEmulator,
    http: aiohttp.ClientSession,
    bot_server: tuple[str, list[tuple[str, bytes]]],
) -> None:
    url, seen = bot_server
    shop = emulator.add_account(followers=2)
    user = emulator.follower_ids(shop)[0]
    base = f"/_emulator/accounts/{shop.channel_id}/webhooks"

    async with http.post(
        base,
        json={
            "url": url,
            "batchSize": 2,
            "events": [
                {"type": "follow"},
                {"type": "message", "userId": user, "text": "hello"},
                {"type": "postback", "userId": user, "data": "a=1", "params": {"k": "v"}},
                {"type": "unfollow", "userId": user, "redelivery": True},
            ],
        },
    ) as resp:
        batches = (await resp.json())["results"]
    async with http.post(base, json={"url": url}) as resp:
        check = (await resp.json())["results"]
    async with http.post(
        base,
        json={"url": url, "badSignature": True, "events": [{"type": "message", "userId": user}]},
    ) as resp:
        assert resp.status == 200
    async with http.post(base, json={"url": url, "events": [{"type": "beacon"}]}) as resp:
        unknown = resp.status

    assert [b["events"] for b in batches] == [2, 2] and check[0]["events"] == 0
    assert [verify(shop.channel_secret, body, sig) for sig, body in seen] == [
        True,
        True,
        True,
        False,
    ]
    assert len(shop.followers) == 3  # the follow event added a user
    assert not shop.followers.is_following(user)  # the unfollow blocked them
    assert unknown == 400


async def test_manual_clock_can_be_advanced_over_http(
    emulator: LineEmulator, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    before = clock.time()
    async with http.post("/_emulator/clock/advance", json={"seconds": 90}) as resp:
        body = await resp.json()

    assert body == {"time": before + 90}
    assert clock.time() == before + 90


def test_the_longest_pauses_between_accepted_requests() -> None:
    """Between answers, and between arrivals: requests that arrived 0.5 s apart and were
    answered after 2 s of latency each, then one that arrived 3 s after the last."""
    clock = ManualClock()
    stats = Stats(clock)
    start = clock.time()
    for arrived, answered in ((0.0, 2.0), (0.5, 2.5), (5.5, 7.5)):
        clock.advance(start + answered - clock.time())
        stats.record("c1", "multicast", 200, arrived=start + arrived)
    stats.record("c1", "multicast", 429, arrived=start + 7.6)  # refused: not counted
    span = stats.to_json()["acceptedSpans"]["c1/multicast"]
    assert span["count"] == 3
    assert span["longestGap"] == pytest.approx(5.0)
    assert span["longestArrivalGap"] == pytest.approx(5.0)
    clock.advance(0.1)
    stats.record("c1", "multicast", 200, arrived=start + 6.0)  # answered late, arrived early
    span = stats.to_json()["acceptedSpans"]["c1/multicast"]
    assert span["longestArrivalGap"] == pytest.approx(5.0)  # 0.5 → 5.5, in arrival order
