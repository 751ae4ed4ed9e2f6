"""Follower ids (paged, verified and premium accounts only) and user profiles."""

from __future__ import annotations

import aiohttp
from broadcaster_line_emulator import Account, LineEmulator, ManualClock
from emulator_support import LineApi

NOT_AVAILABLE = "Access to this API is not available for your account"


async def test_paging_returns_every_follower_once_in_order(
    emulator: LineEmulator, http: aiohttp.ClientSession
) -> None:
    shop = emulator.add_account(tier="premium", followers=3_500, follower_seed="paging")
    api = LineApi(http, shop.access_token)

    pages = []
    start = None
    while True:
        reply = await api.followers(limit=1_000, start=start)
        assert reply.status == 200
        pages.append(reply.body["userIds"])
        start = reply.body.get("next")
        if start is None:
            break

    assert [len(p) for p in pages] == [1_000, 1_000, 1_000, 500]
    everyone = [user for page in pages for user in page]
    assert everyone == emulator.follower_ids(shop)
    assert len(set(everyone)) == 3_500
    assert all(user.startswith("U") and len(user) == 33 for user in everyone)


async def test_default_page_is_300(emulator: LineEmulator, shop: Account, api: LineApi) -> None:
    reply = await api.followers()

    assert len(reply.body["userIds"]) == 300
    assert "next" in reply.body


async def test_blocked_followers_are_left_out_yet_next_is_still_given(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    ids = emulator.follower_ids(shop)
    for user in ids[:10]:
        emulator.block(shop, user)

    first = await api.followers(limit=100)
    everyone = await api.all_followers()

    assert len(first.body["userIds"]) == 90
    assert "next" in first.body
    assert everyone == ids[10:]


async def test_last_page_has_no_next(emulator: LineEmulator, http: aiohttp.ClientSession) -> None:
    small = emulator.add_account(followers=40)
    reply = await LineApi(http, small.access_token).followers(limit=40)

    assert len(reply.body["userIds"]) == 40
    assert "next" not in reply.body


async def test_limit_outside_1_to_1000_is_rejected(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    for bad in (1_001, 0, "ten"):
        reply = await api.followers(limit=bad)
        assert reply.status == 400
        assert reply.detail_properties == ["limit"]
    assert (await api.followers(limit=1_000)).status == 200


async def test_bad_expired_or_foreign_continuation_tokens(
    emulator: LineEmulator,
    shop: Account,
    api: LineApi,
    http: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    other = emulator.add_account(tier="verified", followers=600)
    foreign = (await LineApi(http, other.access_token).followers()).body["next"]
    token = (await api.followers()).body["next"]

    garbage = await api.followers(start="not-a-token")
    from_other_channel = await api.followers(start=foreign)
    fresh = await api.followers(start=token)
    clock.advance(24 * 3600 + 1)
    expired = await api.followers(start=token)

    for reply in (garbage, from_other_channel, expired):
        assert (reply.status, reply.body) == (400, {"message": "Invalid start param"})
    assert fresh.status == 200


async def test_accounts_that_are_neither_verified_nor_premium_get_403(
    emulator: LineEmulator, http: aiohttp.ClientSession
) -> None:
    plain = emulator.add_account(tier="none", followers=100)
    api = LineApi(http, plain.access_token)

    refused = await api.followers()
    emulator.set_tier(plain, "verified")
    allowed = await api.followers()

    assert (refused.status, refused.body) == (403, {"message": NOT_AVAILABLE})
    assert allowed.status == 200


async def test_profile_of_a_seeded_follower_is_stable(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    user = emulator.follower_ids(shop)[42]

    first = await api.profile(user)
    second = await api.profile(user)

    assert first.status == 200
    assert first.body == second.body
    assert first.body["userId"] == user
    assert first.body["displayName"]
    assert set(first.body) <= {"userId", "displayName", "pictureUrl", "statusMessage", "language"}


async def test_profiles_vary_like_real_ones(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    bodies = [(await api.profile(u)).body for u in emulator.follower_ids(shop)[:60]]

    assert len({b["displayName"] for b in bodies}) > 10
    assert any("pictureUrl" not in b for b in bodies)
    assert all(b["pictureUrl"].startswith("https://") for b in bodies if "pictureUrl" in b)
    assert any("language" in b for b in bodies) and any("language" not in b for b in bodies)


async def test_explicit_profile(emulator: LineEmulator, shop: Account, api: LineApi) -> None:
    profile = emulator.add_follower(
        shop,
        "U" + "ab" * 16,
        display_name="Nok",
        picture_url="https://example.com/n.png",
        status_message="Hi",
        language="th",
    )

    reply = await api.profile(profile.user_id)

    assert reply.body == {
        "userId": "U" + "ab" * 16,
        "displayName": "Nok",
        "pictureUrl": "https://example.com/n.png",
        "statusMessage": "Hi",
        "language": "th",
    }


async def test_unknown_blocked_and_malformed_profiles(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    blocked = emulator.follower_ids(shop)[0]
    emulator.block(shop, blocked)

    unknown = await api.profile("U" + "1" * 32)
    gone = await api.profile(blocked)
    malformed = await api.profile("Uxyz")

    assert (unknown.status, unknown.body) == (404, {"message": "Not found"})
    assert (gone.status, gone.body) == (404, {"message": "Not found"})
    assert malformed.status == 400
