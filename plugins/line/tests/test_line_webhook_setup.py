"""Setting the webhook URL through LINE and verifying it, against the emulator (every request
checked against messaging-api.yml)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from broadcaster_line.channel import LineChannel
from broadcaster_line_emulator import Account, LineEmulator

from broadcaster.channels import CredentialsInvalid, SetsWebhooks


class Bot:
    """The service's webhook route, as far as LINE's test can tell: 200 for a signed body."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.bodies: list[dict[str, object]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = base64.b64encode(
            hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(request.headers.get("x-line-signature", ""), expected):
            return web.Response(status=401)
        self.bodies.append(json.loads(body))
        return web.Response(text="OK")


@pytest.fixture
async def bot(shop: Account) -> AsyncIterator[Bot]:
    running = Bot(shop.channel_secret)
    app = web.Application()
    app.router.add_post("/webhooks/line/ch1", running.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    running.url = f"http://{host}:{port}/webhooks/line/ch1"
    yield running
    await runner.cleanup()


def test_the_line_channel_sets_webhooks() -> None:
    assert issubclass(LineChannel, SetsWebhooks)


async def test_set_and_verified(
    line_channel: Callable[..., LineChannel], shop: Account, bot: Bot
) -> None:
    setup = await line_channel(shop).set_webhook(bot.url)
    assert (setup.set, setup.verified, setup.endpoint, setup.detail) == (True, True, bot.url, "")
    assert shop.webhook_endpoint == bot.url
    assert bot.bodies == [{"destination": shop.bot_user_id, "events": []}]


async def test_set_but_the_test_fails(
    line_channel: Callable[..., LineChannel], shop: Account, bot: Bot
) -> None:
    bot.secret = "another channel's secret"  # the route refuses LINE's signature: 401
    setup = await line_channel(shop).set_webhook(bot.url)
    assert (setup.set, setup.verified) == (True, False)
    assert "statusCode 401" in setup.detail and "Unauthorized" in setup.detail
    nowhere = await line_channel(shop).set_webhook("http://127.0.0.1:9/webhooks/line/ch1")
    assert not nowhere.verified and "statusCode 0" in nowhere.detail


async def test_a_url_line_refuses(line_channel: Callable[..., LineChannel], shop: Account) -> None:
    setup = await line_channel(shop).set_webhook("http://hooks.example.com/webhooks/line/ch1")
    assert (setup.set, setup.verified, setup.endpoint) == (False, False, "")
    assert setup.detail.startswith("LINE refused the webhook URL") and "HTTPS" in setup.detail
    assert shop.webhook_endpoint is None


async def test_a_refused_token(
    line_channel: Callable[..., LineChannel], emulator: LineEmulator, shop: Account, bot: Bot
) -> None:
    channel = line_channel(shop)
    emulator.rotate_token(shop)
    with pytest.raises(CredentialsInvalid):
        await channel.set_webhook(bot.url)
