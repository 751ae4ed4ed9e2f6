"""The `line` channel type: registration, credentials, connect and tiers, eligibility, quota."""

from __future__ import annotations

import socket
from collections.abc import Callable

import aiohttp
import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.client import LineClient
from broadcaster_line.retry import RetryPolicy
from broadcaster_line_emulator import Faults, LineEmulator
from broadcaster_line_emulator.conformance import ConformanceRecorder

from broadcaster.channels import (
    AccountInfo,
    AccountTier,
    Audience,
    ChannelRuntime,
    ChannelUnavailable,
    CredentialsInvalid,
    InteractionWindow,
    Quota,
)
from broadcaster.channels.manager import PluginManager

MakeChannel = Callable[..., LineChannel]


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_entry_point_registers_the_line_channel() -> None:
    registry = PluginManager.load(("line",)).register_channels()

    assert registry.types() == ["line"]
    assert registry.get("line") is LineChannel


def test_capabilities_and_credential_fields() -> None:
    caps = LineChannel.capabilities

    assert (caps.max_recipients_per_request, caps.requests_per_second, caps.max_messages) == (
        500,
        200.0,
        5,
    )
    assert {k.kind: dict(k.limits) for k in caps.message_kinds} == {
        "text": {"max_text_utf16": 5000, "max_emojis": 20},
        "image": {"max_url_length": 2000},
        "sticker": {},
        "video": {"max_url_length": 2000, "max_tracking_id_length": 100},
        "audio": {"max_url_length": 2000},
        "channel_native": {
            "max_alt_text_utf16": 1500,
            "max_template_alt_text_utf16": 400,
            "max_quick_reply_items": 13,
            "max_imagemap_actions": 50,
            "max_template_columns": 10,
            "max_flex_bubbles": 12,
            "max_flex_bubble_bytes": 30_000,
            "max_flex_carousel_bytes": 50_000,
        },
    }
    assert caps.idempotency_window_seconds == 86_400
    assert caps.sync_requests_per_second == 2_000.0
    assert [(f.name, f.secret, f.required) for f in LineChannel.credential_fields] == [
        ("channel_access_token", True, False),
        ("channel_secret", True, True),
        ("channel_id", False, False),
        ("assertion_private_key", True, False),
        ("assertion_key_id", False, False),
    ]


async def test_from_credentials_does_no_io_and_reads_the_api_base_from_the_environment(
    emulator: LineEmulator, session: aiohttp.ClientSession, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(tier="verified", display_name="Tea House")
    runtime = ChannelRuntime(http=session, env={"BROADCASTER_LINE_API_BASE": emulator.base_url})
    credentials = {"channel_access_token": shop.access_token, "channel_secret": shop.channel_secret}

    channel = LineChannel.from_credentials(credentials, runtime)
    requests_before_connect = emulator.stats.count()
    info = await channel.connect()

    assert requests_before_connect == 0
    assert info.display_name == "Tea House"
    assert shop.access_token not in repr(channel) and shop.channel_secret not in repr(channel)
    assert not session.closed  # the core's session is borrowed, never closed
    conformance.assert_clean()


def test_missing_credentials_are_refused_without_io() -> None:
    runtime = ChannelRuntime(http=None, env={})  # type: ignore[arg-type]

    with pytest.raises(CredentialsInvalid, match="channel_secret"):
        LineChannel.from_credentials({"channel_access_token": "t"}, runtime)
    with pytest.raises(CredentialsInvalid, match="channel_access_token"):
        LineChannel.from_credentials({"channel_access_token": " ", "channel_secret": "s"}, runtime)


async def test_connect_a_premium_account(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(tier="premium", display_name="Premium Shop")

    info = await line_channel(shop).connect()

    assert info.tier is AccountTier.PREMIUM
    assert info.account_id == shop.bot_user_id
    assert info.display_name == "Premium Shop"
    assert info.handle == shop.basic_id
    assert info.picture_uri == "https://profile.line-scdn.net/emulator/bot"
    # premiumId settles it: no follower-list probe is needed
    assert emulator.stats.count("followers") == 0
    conformance.assert_clean()


async def test_connect_a_verified_account_probes_the_follower_list(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified", followers=3, picture_url=None)

    info = await line_channel(shop).connect()

    assert info.tier is AccountTier.VERIFIED
    assert info.picture_uri == ""
    assert emulator.stats.count("followers", 200) == 1


async def test_connect_a_standard_account(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="none", followers=3)

    info = await line_channel(shop).connect()

    assert info.tier is AccountTier.STANDARD
    assert emulator.stats.count("followers", 403) == 1


async def test_a_tier_change_shows_on_the_next_connect(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="none")
    channel = line_channel(shop)
    before = await channel.connect()

    emulator.set_tier(shop, "verified")
    after = await channel.connect()

    assert (before.tier, after.tier) == (AccountTier.STANDARD, AccountTier.VERIFIED)


async def test_a_bad_token_is_credentials_invalid_with_a_safe_message(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account()
    channel = line_channel(shop)
    emulator.revoke_token(shop)

    with pytest.raises(CredentialsInvalid) as raised:
        await channel.connect()

    assert "channel access token" in str(raised.value)
    assert shop.access_token not in str(raised.value)
    assert emulator.stats.count("bot_info", 401) == 1  # a refused token is not retried


async def test_server_errors_that_persist_are_channel_unavailable(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account()
    emulator.set_faults(Faults(error_rate=1.0, error_statuses=(503,)), shop)

    with pytest.raises(ChannelUnavailable, match="503"):
        await line_channel(shop).connect()

    assert emulator.stats.count("bot_info") == 3  # every attempt of the retry policy


async def test_a_transient_error_is_retried(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(tier="verified")
    emulator.set_faults(Faults(burst_429=1), shop)

    info = await line_channel(shop).connect()

    assert info.tier is AccountTier.VERIFIED
    assert emulator.stats.count("bot_info", 429) == 1


async def test_an_unreachable_api_is_channel_unavailable(session: aiohttp.ClientSession) -> None:
    client = LineClient(session, "token", _closed_port_url())
    channel = LineChannel(client, "secret", retry=RetryPolicy(attempts=2, base_delay=0.0))

    with pytest.raises(ChannelUnavailable, match="network error"):
        await channel.connect()


@pytest.mark.parametrize(
    ("window", "tier", "eligible"),
    [
        (InteractionWindow.ALL_CONTACTS, AccountTier.STANDARD, False),
        (InteractionWindow.ALL_CONTACTS, AccountTier.VERIFIED, True),
        (InteractionWindow.ALL_CONTACTS, AccountTier.PREMIUM, True),
        (InteractionWindow.LAST_30_DAYS, AccountTier.STANDARD, True),
        (InteractionWindow.LAST_24_HOURS, AccountTier.STANDARD, True),
    ],
)
def test_all_contacts_needs_a_verified_or_premium_account(
    window: InteractionWindow, tier: AccountTier, eligible: bool
) -> None:
    channel = LineChannel(None, "secret")  # type: ignore[arg-type]
    account = AccountInfo("U" + "0" * 32, "Shop", tier)

    verdict = channel.check_eligibility(Audience(window, customer_group="g1"), account)

    assert verdict.eligible is eligible
    if not eligible:
        assert verdict.reason == "AUDIENCE_NOT_ELIGIBLE"
        assert "verified or premium" in verdict.message
        assert "last-interaction window" in verdict.message


async def test_quota_of_an_account_with_a_monthly_limit(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(quota=50_000)
    emulator.set_quota(shop, 50_000, usage=1_234)

    quota = await line_channel(shop).quota()

    assert quota == Quota(limited=True, limit=50_000, used=1_234)
    assert quota.remaining == 48_766
    conformance.assert_clean()


async def test_quota_of_an_account_without_a_limit(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(quota=None)
    emulator.set_quota(shop, None, usage=42)

    quota = await line_channel(shop).quota()

    assert quota == Quota(limited=False, limit=None, used=42)
    assert quota.remaining is None


async def test_quota_with_a_refused_token(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(quota=10)
    channel = line_channel(shop)
    emulator.rotate_token(shop)

    with pytest.raises(CredentialsInvalid):
        await channel.quota()
