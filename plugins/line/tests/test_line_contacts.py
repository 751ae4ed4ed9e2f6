"""Contact sync against the emulator: follower pages, resuming, tiers, retries, profiles, pacing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.pacing import TokenBucket
from broadcaster_line.retry import RetryPolicy
from broadcaster_line_emulator import Faults, LineEmulator, ManualClock
from broadcaster_line_emulator.conformance import ConformanceRecorder

from broadcaster.channels import (
    ChannelContact,
    ChannelUnavailable,
    ContactPage,
    ContactsNotListable,
    CredentialsInvalid,
    FollowerState,
)

MakeChannel = Callable[..., LineChannel]
UNKNOWN_USER = "U" + "0" * 32


async def collect(channel: LineChannel, cursor: str | None = None) -> list[ContactPage]:
    return [page async for page in channel.sync_contacts(cursor)]


def ids(pages: list[ContactPage]) -> list[str]:
    return [c.external_id for page in pages for c in page.contacts]


async def test_sync_lists_every_follower_in_pages_of_a_thousand(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(tier="verified", followers=3_500)
    queries: list[dict[str, str]] = []
    emulator.add_observer(lambda e: queries.append(dict(e.query)))

    pages = await collect(line_channel(shop))

    assert [len(p.contacts) for p in pages] == [1_000, 1_000, 1_000, 500]
    assert [p.cursor is None for p in pages] == [False, False, False, True]
    assert ids(pages) == emulator.follower_ids(shop)
    contact = pages[0].contacts[0]
    assert contact.follower_state is FollowerState.FOLLOWING
    assert (contact.display_name, contact.picture_uri) == ("", "")
    assert emulator.stats.count("followers", 200) == 4
    conformance.assert_clean()
    assert [q["limit"] for q in queries] == ["1000"] * 4
    assert "start" not in queries[0]
    assert [q["start"] for q in queries[1:]] == [p.cursor for p in pages[:3]]


async def test_sync_resumes_from_a_cursor_midway(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="premium", followers=2_600)
    channel = line_channel(shop)
    first_two: list[ContactPage] = []
    async for page in channel.sync_contacts(None):
        first_two.append(page)
        if len(first_two) == 2:
            break  # the process "crashes" after committing two pages

    rest = await collect(channel, first_two[-1].cursor)

    everyone = emulator.follower_ids(shop)
    assert ids(first_two) == everyone[:2_000]
    assert ids(rest) == everyone[2_000:]
    assert rest[-1].cursor is None


async def test_an_expired_cursor_starts_the_list_over(
    emulator: LineEmulator, line_channel: MakeChannel, clock: ManualClock
) -> None:
    shop = emulator.add_account(tier="verified", followers=1_500)
    channel = line_channel(shop)
    first = await anext(aiter(channel.sync_contacts(None)))
    clock.advance(25 * 3600)  # LINE's continuation tokens last 24 hours

    pages = await collect(channel, first.cursor)

    assert ids(pages) == emulator.follower_ids(shop)


async def test_blocked_followers_are_not_listed(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=1_200)
    gone = emulator.follower_ids(shop)[5]
    emulator.block(shop, gone)

    listed = ids(await collect(line_channel(shop)))

    assert gone not in listed and len(listed) == 1_199


async def test_a_standard_account_cannot_list_its_followers(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="none", followers=100)

    with pytest.raises(ContactsNotListable) as raised:
        await collect(line_channel(shop))

    assert "verified or premium" in str(raised.value)
    assert "webhooks" in str(raised.value)
    assert emulator.stats.count("followers", 403) == 1  # a 403 is an answer, not retried


async def test_transient_failures_are_retried_and_the_sync_completes(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=5_000)
    emulator.set_faults(
        Faults(error_rate=0.3, reset_rate=0.2, endpoints=frozenset({"followers"}), seed=7), shop
    )

    pages = await collect(line_channel(shop, retry=RetryPolicy(attempts=8, base_delay=0.0)))

    assert ids(pages) == emulator.follower_ids(shop)
    assert sum(emulator.stats.faults[k] for k in ("500", "502", "503", "reset")) > 0


async def test_persistent_failures_end_in_channel_unavailable(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=2_500)
    channel = line_channel(shop)
    pages = aiter(channel.sync_contacts(None))
    await anext(pages)
    emulator.set_faults(Faults(error_rate=1.0, error_statuses=(500,)), shop)

    with pytest.raises(ChannelUnavailable, match="500"):
        await anext(pages)

    assert emulator.stats.count("followers", 500) == 3


async def test_a_revoked_token_is_credentials_invalid(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=10)
    channel = line_channel(shop)
    emulator.revoke_token(shop)

    with pytest.raises(CredentialsInvalid):
        await collect(channel)


async def test_profiles_with_unknown_and_blocked_users_left_out(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(tier="verified", followers=300)
    followers = emulator.follower_ids(shop)
    emulator.block(shop, followers[1])
    named = emulator.add_follower(
        shop, display_name="Mali", picture_url="https://profile.line-scdn.net/mali"
    )
    wanted = [followers[0], followers[1], UNKNOWN_USER, named.user_id, *followers[2:]]

    profiles = await line_channel(shop).fetch_profiles(wanted)

    expected_ids = [followers[0], named.user_id, *followers[2:]]
    assert [p.external_id for p in profiles] == expected_ids
    assert (
        ChannelContact(
            named.user_id, "Mali", "https://profile.line-scdn.net/mali", FollowerState.FOLLOWING
        )
        in profiles
    )
    for contact in profiles:
        profile = shop.followers.profile(contact.external_id)
        assert contact.display_name == profile.display_name
        assert contact.picture_uri == (profile.picture_url or "")
    assert emulator.stats.count("profile", 404) == 2
    conformance.assert_clean()


async def test_no_profiles_asked_none_fetched(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified")

    assert await line_channel(shop).fetch_profiles([]) == []
    assert emulator.stats.count("profile") == 0


async def test_profiles_keep_a_bounded_number_of_requests_in_flight(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=400)
    emulator.set_faults(Faults(latency=0.01), shop)
    in_flight = peak = 0
    channel = line_channel(shop)
    client = channel._client
    original = client.profile

    async def counting(user_id: str):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(user_id)
        finally:
            in_flight -= 1

    client.profile = counting  # type: ignore[method-assign]
    profiles = await channel.fetch_profiles(emulator.follower_ids(shop))

    assert len(profiles) == 400
    assert 10 < peak <= 50


async def test_a_profile_failure_that_persists_stops_the_batch(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=200)
    emulator.set_faults(Faults(error_rate=1.0, endpoints=frozenset({"profile"})), shop)

    with pytest.raises(ChannelUnavailable):
        await line_channel(shop).fetch_profiles(emulator.follower_ids(shop))

    # the first failure cancels the other workers instead of retrying all 200 ids
    assert emulator.stats.count("profile") < 200


def test_the_token_bucket_allows_a_burst_then_spaces_requests() -> None:
    now = [100.0]
    bucket = TokenBucket(1_000.0, burst=5, clock=lambda: now[0])

    delays = [bucket.reserve() for _ in range(8)]

    assert delays[:5] == [0.0] * 5
    assert delays[5:] == pytest.approx([0.001, 0.002, 0.003])
    now[0] += 1.0  # a quiet second refills the burst, no more
    assert [bucket.reserve() for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0, 0.001])


async def test_the_token_bucket_holds_its_rate() -> None:
    bucket = TokenBucket(2_000.0, burst=10)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await asyncio.gather(*(bucket.acquire() for _ in range(210)))
    elapsed = loop.time() - started

    assert elapsed >= 0.1  # 200 requests beyond the burst at 2,000/s
