"""Webhook events per webhook.yml, signed with the channel secret, posted to a receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from broadcaster_line_emulator import Account, LineEmulator, ManualClock, sign, verify
from broadcaster_line_emulator.conformance import check_webhook_body
from emulator_support import LineApi

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


@dataclass
class Receiver:
    """A bot server that checks signatures the way LINE tells bots to."""

    secret: str
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        expected = base64.b64encode(
            hmac.new(self.secret.encode(), body, hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(request.headers.get("x-line-signature", ""), expected):
            return web.Response(status=401, text="bad signature")
        return web.Response(text="OK")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver(shop: Account) -> AsyncIterator[Receiver]:
    bot = Receiver(shop.channel_secret)
    app = web.Application()
    app.router.add_post("/webhooks/line/shop", bot.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    bot.url = f"http://{host}:{port}/webhooks/line/shop"
    yield bot
    await runner.cleanup()


async def test_events_are_signed_valid_and_batched(
    emulator: LineEmulator, shop: Account, receiver: Receiver, clock: ManualClock
) -> None:
    users = emulator.follower_ids(shop)[:3]
    ev = emulator.events
    events = [
        ev.follow(users[0]),
        ev.text_message(users[1], "Do you ship to Chiang Mai? 🚚"),
        ev.postback(users[2], "action=buy&item=42", params={"date": "2025-06-01"}),
        ev.unfollow(users[0]),
        ev.postback(users[1], "action=optout"),
    ]

    results = await emulator.webhook_sender(shop).post_batches(receiver.url, events, batch_size=2)

    assert [r.status for r in results] == [200, 200, 200]
    assert [r.event_count for r in results] == [2, 2, 1]
    for headers, body in receiver.received:
        assert verify(shop.channel_secret, body, headers["x-line-signature"])
        assert headers["Content-Type"].startswith("application/json")
        assert check_webhook_body(body, headers) == []
    delivered = [e for b in receiver.bodies() for e in b["events"]]
    assert delivered == events
    assert all(b["destination"] == shop.bot_user_id for b in receiver.bodies())
    assert {e["timestamp"] for e in events} == {int(clock.time() * 1000)}


def test_event_shapes_follow_the_spec(emulator: LineEmulator, shop: Account) -> None:
    user = emulator.follower_ids(shop)[0]
    ev = emulator.events

    follow = ev.follow(user, is_unblocked=True)
    unfollow = ev.unfollow(user)
    message = ev.text_message(user, "hi")
    postback = ev.postback(user, "x")

    for event in (follow, unfollow, message, postback):
        assert ULID.fullmatch(event["webhookEventId"])
        assert event["source"] == {"type": "user", "userId": user}
        assert event["deliveryContext"] == {"isRedelivery": False}
        assert event["mode"] == "active"
    assert follow["follow"] == {"isUnblocked": True} and follow["replyToken"]
    assert "replyToken" not in unfollow
    assert message["message"]["type"] == "text" and message["message"]["quoteToken"]
    assert postback["postback"] == {"data": "x"}
    ids = {e["webhookEventId"] for e in (follow, unfollow, message, postback)}
    assert len(ids) == 4


def test_redelivery_keeps_the_event_id(emulator: LineEmulator, shop: Account) -> None:
    event = emulator.events.text_message(emulator.follower_ids(shop)[0], "again?")

    again = emulator.events.redelivered(event)

    assert again["webhookEventId"] == event["webhookEventId"]
    assert again["deliveryContext"] == {"isRedelivery": True}
    assert event["deliveryContext"] == {"isRedelivery": False}


async def test_bad_and_missing_signatures(
    emulator: LineEmulator, shop: Account, receiver: Receiver
) -> None:
    sender = emulator.webhook_sender(shop)
    event = emulator.events.follow(emulator.follower_ids(shop)[0])

    bad = await sender.post(receiver.url, [event], bad_signature=True)
    missing = await sender.post(receiver.url, [event], omit_signature=True)

    assert bad.status == missing.status == 401
    headers, body = receiver.received[0]
    assert not verify(shop.channel_secret, body, headers["x-line-signature"])
    assert "x-line-signature" not in {k.lower() for k in receiver.received[1][0]}


async def test_connectivity_check_has_no_events(
    emulator: LineEmulator, shop: Account, receiver: Receiver
) -> None:
    result = await emulator.webhook_sender(shop).connectivity_check(receiver.url)

    assert result.status == 200
    assert receiver.bodies() == [{"destination": shop.bot_user_id, "events": []}]
    assert check_webhook_body(receiver.received[0][1]) == []


async def test_follow_and_unfollow_change_the_account(
    emulator: LineEmulator, shop: Account, api: LineApi, receiver: Receiver
) -> None:
    newcomer = emulator.follow(shop, display_name="New customer")
    leaver = emulator.follower_ids(shop)[5]
    gone = emulator.unfollow(shop, leaver)
    back = emulator.follow(shop, leaver)

    result = await emulator.post_webhook(shop, receiver.url, [newcomer, gone, back])

    new_id = newcomer["source"]["userId"]
    assert result.status == 200 and result.event_count == 3
    assert newcomer["follow"] == {"isUnblocked": False}
    assert back["follow"] == {"isUnblocked": True}
    assert (await api.profile(new_id)).body["displayName"] == "New customer"
    assert new_id in await api.all_followers()
    assert (await api.profile(leaver)).status == 200


def test_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"destination":"U0","events":[]}'
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()

    assert sign("s3cret", body) == expected
    assert verify("s3cret", body, expected)
    assert not verify("s3cret", body + b" ", expected)


def test_the_checker_rejects_bodies_that_break_webhook_yml() -> None:
    bad_destination = json.dumps({"destination": "bot", "events": []}).encode()
    no_text = json.dumps(
        {
            "destination": "U" + "0" * 32,
            "events": [
                {
                    "type": "message",
                    "mode": "active",
                    "timestamp": 1,
                    "webhookEventId": "01J",
                    "deliveryContext": {"isRedelivery": False},
                    "source": {"type": "user", "userId": "U1"},
                    "message": {"type": "text", "id": "1", "quoteToken": "q"},
                }
            ],
        }
    ).encode()

    assert check_webhook_body(bad_destination)
    assert any("'text' is a required property" in v.message for v in check_webhook_body(no_text))


async def test_a_thousand_events_in_concurrent_batches(
    emulator: LineEmulator, shop: Account, receiver: Receiver
) -> None:
    users = emulator.follower_ids(shop)
    events = [emulator.events.text_message(users[i % len(users)], f"#{i}") for i in range(1_000)]

    results = await emulator.webhook_sender(shop).post_batches(
        receiver.url, events, batch_size=50, concurrency=8
    )

    assert len(results) == 20 and {r.status for r in results} == {200}
    received = [e["webhookEventId"] for b in receiver.bodies() for e in b["events"]]
    assert sorted(received) == sorted(e["webhookEventId"] for e in events)
    assert len(set(received)) == 1_000
