"""Token buckets at LINE's rates, the 429s they give, and the monthly quota."""

from __future__ import annotations

import pytest
from broadcaster_line_emulator import Account, LineEmulator, ManualClock, Rate
from broadcaster_line_emulator.ratelimit import DEFAULT_RATES, RateLimiter, TokenBucket
from emulator_support import LineApi, text

RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."


def test_published_rates() -> None:
    assert DEFAULT_RATES["multicast"] == Rate(200, 1.0)
    assert DEFAULT_RATES["broadcast"] == Rate(60, 3600.0)
    for endpoint in ("followers", "profile", "push", "bot_info", "quota", "quota_consumption"):
        assert DEFAULT_RATES[endpoint] == Rate(2_000, 1.0)


def test_bucket_allows_one_window_then_refills_continuously() -> None:
    clock = ManualClock()
    bucket = TokenBucket(Rate(200), clock)

    burst = sum(bucket.try_acquire() for _ in range(250))
    clock.advance(0.004)  # 0.8 of a token
    too_soon = bucket.try_acquire()
    clock.advance(0.001)
    refilled = bucket.try_acquire()
    clock.advance(60)
    capped = sum(bucket.try_acquire() for _ in range(250))

    assert burst == 200
    assert not too_soon
    assert refilled
    assert capped == 200  # never more than one window's worth


@pytest.mark.parametrize("per_second", [200, 2_000])
def test_a_client_pacing_at_the_limit_is_never_refused(per_second: int) -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, {"multicast": Rate(per_second)})
    refused = 0
    for _ in range(per_second * 5):
        refused += not limiter.allow("channel", "multicast")
        clock.advance(1 / per_second)
    assert refused == 0


def test_limits_are_per_channel_and_per_endpoint() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, {"multicast": Rate(2), "push": Rate(1)})

    a = [limiter.allow("a", "multicast") for _ in range(3)]
    b = [limiter.allow("b", "multicast") for _ in range(3)]
    push = [limiter.allow("a", "push") for _ in range(2)]
    unlimited = all(limiter.allow("a", "narrowcast-not-limited") for _ in range(10_000))

    assert a == b == [True, True, False]
    assert push == [True, False]
    assert unlimited


async def test_the_201st_multicast_in_a_second_gets_429(
    emulator: LineEmulator, shop: Account, api: LineApi, clock: ManualClock
) -> None:
    user = emulator.follower_ids(shop)[:1]

    replies = [await api.multicast(user) for _ in range(201)]
    clock.advance(1.0)
    after_a_second = await api.multicast(user)

    assert [r.status for r in replies].count(200) == 200
    assert replies[-1].status == 429
    assert replies[-1].body == {"message": RATE_LIMITED}
    assert after_a_second.status == 200
    assert emulator.times_received(shop, user[0]) == 201
    stats = emulator.stats
    assert stats.rate_limited["multicast"] == 1
    assert stats.count("multicast", 429) == 1
    assert stats.peak_rate("multicast", shop.channel_id) == 200
    assert stats.peak_rate("multicast", shop.channel_id, accepted=False) == 201
    assert sum(stats.histogram("multicast", shop.channel_id).values()) == 201


async def test_broadcast_is_limited_to_60_an_hour(
    emulator: LineEmulator, api: LineApi, shop: Account, clock: ManualClock
) -> None:
    statuses = [(await api.broadcast()).status for _ in range(61)]
    clock.advance(59)
    still = await api.broadcast()
    clock.advance(1)
    next_token = await api.broadcast()

    assert statuses == [200] * 60 + [429]
    assert (still.status, next_token.status) == (429, 200)


async def test_rates_can_be_changed_at_run_time(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    emulator.set_rate("profile", Rate(2, 1.0))
    user = emulator.follower_ids(shop)[0]

    statuses = [(await api.profile(user)).status for _ in range(3)]
    emulator.set_rate("profile", None)
    lifted = [(await api.profile(user)).status for _ in range(5)]

    assert statuses == [200, 200, 429]
    assert lifted == [200] * 5


async def test_monthly_limit_refuses_a_send_that_would_exceed_it(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    ids = emulator.follower_ids(shop)
    emulator.set_quota(shop, 1_000)

    first = await api.multicast(ids[:500])
    emulator.set_quota(shop, 700)  # lowered mid-send
    refused = await api.multicast(ids[500:1_000])
    fits = await api.multicast(ids[500:700])
    full = await api.push(ids[800])

    assert first.status == 200
    assert (refused.status, refused.body) == (429, {"message": MONTHLY_LIMIT})
    assert fits.status == 200
    assert (full.status, full.message) == (429, MONTHLY_LIMIT)
    assert shop.quota.usage == 700
    assert emulator.times_received(shop, ids[800]) == 0
    assert shop.deliveries.users_reached() == 700
    assert emulator.stats.quota_rejected["multicast"] == 1
    assert (await api.consumption()).body == {"totalUsage": 700}


async def test_blocked_recipients_do_not_count_against_the_quota(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    ids = emulator.follower_ids(shop)[:10]
    for user in ids[:4]:
        emulator.block(shop, user)
    emulator.set_quota(shop, 6)

    reply = await api.multicast(ids, text("Only six can see this"))

    assert reply.status == 200
    assert shop.quota.usage == 6
    assert shop.quota.remaining == 0
