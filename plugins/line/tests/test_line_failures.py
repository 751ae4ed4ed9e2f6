"""Every LINE answer the plugin did not expect becomes CredentialsInvalid or ChannelUnavailable,
never a bare ChannelError (which the core could only report as INTERNAL); a token that could
not travel in a header never reaches aiohttp."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from broadcaster_line.channel import LineChannel
from broadcaster_line.client import LineClient
from broadcaster_line.retry import RetryPolicy

from broadcaster.channels import ChannelError, ChannelUnavailable, CredentialsInvalid

QUICK = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)
Answering = Callable[[int, int], LineChannel]


@pytest.fixture
async def answering(
    session: aiohttp.ClientSession,
) -> AsyncIterator[Callable[..., AsyncIterator[LineChannel]]]:
    """A channel whose 'LINE' answers bot info with `bot_status`, the follower probe with
    `probe_status` and the quota calls with `quota_status`."""
    runners: list[web.AppRunner] = []

    async def make(
        bot_status: int = 200, probe_status: int = 200, quota_status: int = 200
    ) -> LineChannel:
        async def bot(_: web.Request) -> web.Response:
            body = {"userId": "U" + "0" * 32, "displayName": "shop"}
            if bot_status != 200:
                body = {"message": "refused"}
            return web.json_response(body, status=bot_status)

        async def probe(_: web.Request) -> web.Response:
            return web.json_response({"userIds": []}, status=probe_status)

        async def quota(_: web.Request) -> web.Response:
            return web.json_response({"type": "none", "totalUsage": 0}, status=quota_status)

        app = web.Application()
        app.router.add_get("/v2/bot/info", bot)
        app.router.add_get("/v2/bot/followers/ids", probe)
        app.router.add_get("/v2/bot/message/quota", quota)
        app.router.add_get("/v2/bot/message/quota/consumption", quota)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        client = LineClient(session, "token", f"http://127.0.0.1:{port}")
        return LineChannel(client, "secret", retry=QUICK)

    yield make  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, CredentialsInvalid),
        (403, CredentialsInvalid),
        (404, ChannelUnavailable),
        (400, ChannelUnavailable),
        (409, ChannelUnavailable),
        (418, ChannelUnavailable),
        (302, ChannelUnavailable),
    ],
)
async def test_every_unexpected_bot_info_answer_is_mapped(
    answering: Callable[..., object], status: int, error: type[ChannelError]
) -> None:
    channel = await answering(bot_status=status)  # type: ignore[misc]
    with pytest.raises(ChannelError) as raised:
        await channel.connect()
    assert type(raised.value) is error


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_unexpected_answers_to_the_tier_probe_and_quota_are_mapped(
    answering: Callable[..., object], status: int
) -> None:
    probing = await answering(probe_status=status)  # type: ignore[misc]
    with pytest.raises(ChannelUnavailable):
        await probing.connect()
    quota = await answering(quota_status=status)  # type: ignore[misc]
    with pytest.raises(ChannelUnavailable):
        await quota.quota()


async def test_a_bot_info_without_a_user_id_is_channel_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    async def bot(_: web.Request) -> web.Response:
        return web.json_response({"displayName": "no id"})

    app = web.Application()
    app.router.add_get("/v2/bot/info", bot)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        channel = LineChannel(LineClient(session, "t", f"http://127.0.0.1:{port}"), "s")
        with pytest.raises(ChannelUnavailable):
            await channel.connect()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("token", ["tok\r\nX-Injected: 1", "tok\n", "tok\x00", "tök", "\x85"])
def test_a_token_that_cannot_be_a_header_is_refused_before_any_request(
    session: aiohttp.ClientSession, token: str
) -> None:
    with pytest.raises(CredentialsInvalid, match="control characters"):
        LineClient(session, token, "http://127.0.0.1:1")
