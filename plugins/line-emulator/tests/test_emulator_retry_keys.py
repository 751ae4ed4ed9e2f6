"""`X-Line-Retry-Key`: accepted once, answered with 409 and the original request id for 24 hours,
never delivered twice."""

from __future__ import annotations

import asyncio

from broadcaster_line_emulator import Account, LineEmulator, ManualClock
from emulator_support import LineApi, new_retry_key, text


async def test_replay_gets_409_with_the_accepted_request_id_and_no_second_delivery(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    to = emulator.follower_ids(shop)[:300]
    key = new_retry_key()

    first = await api.multicast(to, text("Flash sale"), retry_key=key)
    replay = await api.multicast(to, text("Flash sale"), retry_key=key)

    assert first.status == 200
    assert replay.status == 409
    assert replay.message == "The retry key is already accepted"
    assert replay.headers["x-line-accepted-request-id"] == first.request_id
    assert replay.request_id not in (None, first.request_id)
    assert "sentMessages" not in replay.body  # only push answers carry them
    assert all(emulator.times_received(shop, user) == 1 for user in to)
    assert shop.quota.usage == 300
    [delivery] = emulator.received(to[0])
    assert (delivery.request_id, delivery.retry_key) == (first.request_id, key)


async def test_push_replay_returns_the_original_sent_messages(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    user = emulator.follower_ids(shop)[3]
    key = new_retry_key()

    first = await api.push(user, retry_key=key)
    replay = await api.push(user, retry_key=key)

    assert replay.status == 409
    assert replay.body["sentMessages"] == first.body["sentMessages"]
    assert emulator.times_received(shop, user) == 1


async def test_keys_are_remembered_for_24_hours(
    emulator: LineEmulator, shop: Account, api: LineApi, clock: ManualClock
) -> None:
    user = emulator.follower_ids(shop)[:1]
    key = new_retry_key()
    await api.multicast(user, retry_key=key)

    clock.advance(24 * 3600 - 1)
    still_known = await api.multicast(user, retry_key=key)
    clock.advance(2)
    forgotten = await api.multicast(user, retry_key=key)

    assert still_known.status == 409
    assert forgotten.status == 200  # LINE treats it as a new request: a duplicate message
    assert emulator.times_received(shop, user[0]) == 2


async def test_a_key_whose_request_failed_can_be_used_again(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    user = emulator.follower_ids(shop)[:1]
    key = new_retry_key()
    emulator.set_quota(shop, 0)

    refused = await api.multicast(user, retry_key=key)
    invalid = await api.multicast(user, text(""), retry_key=key)
    emulator.set_quota(shop, 10)
    accepted = await api.multicast(user, retry_key=key)

    assert (refused.status, invalid.status, accepted.status) == (429, 400, 200)
    assert emulator.times_received(shop, user[0]) == 1


async def test_keys_are_case_insensitive_uuids_and_per_channel(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    other = emulator.add_account(followers=5, follower_seed="other")
    other_api = LineApi(api.session, other.access_token)
    key = new_retry_key()

    await api.multicast(emulator.follower_ids(shop)[:1], retry_key=key)
    upper = await api.multicast(emulator.follower_ids(shop)[:1], retry_key=key.upper())
    elsewhere = await other_api.multicast(emulator.follower_ids(other)[:1], retry_key=key)

    assert upper.status == 409
    assert elsewhere.status == 200


async def test_invalid_key_and_key_on_unsupported_endpoint_are_400(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    not_uuid = await api.multicast(emulator.follower_ids(shop)[:1], retry_key="retry-1")
    on_get = await api.call("GET", "/v2/bot/info", headers={"X-Line-Retry-Key": new_retry_key()})

    assert not_uuid.status == 400
    assert on_get.status == 400
    assert shop.deliveries.total_deliveries == 0


async def test_concurrent_requests_with_one_key_deliver_once(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    to = emulator.follower_ids(shop)[:50]
    key = new_retry_key()

    replies = await asyncio.gather(*(api.multicast(to, retry_key=key) for _ in range(8)))

    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [409] * 7
    accepted = next(r for r in replies if r.status == 200)
    assert {r.headers["x-line-accepted-request-id"] for r in replies if r.status == 409} == {
        accepted.request_id
    }
    assert shop.deliveries.total_deliveries == 50
