"""Webhooks: signatures first, then events reduced to what the core records."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from aiohttp import web
from broadcaster_line import webhook
from broadcaster_line.channel import LineChannel
from broadcaster_line.webhook import MalformedWebhook
from broadcaster_line_emulator import Account, EventFactory, LineEmulator, sign
from broadcaster_line_emulator.conformance import SPEC_DIR, check_webhook_body
from broadcaster_line_emulator.webhooks import callback_body
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.channels import (
    EventRefusal,
    InteractionEvent,
    InteractionKind,
    RefusedEvent,
    WebhookRejected,
)

SECRET = "c0ffee" * 5 + "ab"
BOT = "U" + "f" * 32
ALICE = "U" + "1" * 32
GROUP = "C" + "2" * 32
T0 = 1_750_000_000_123  # ms


def channel(secret: str = SECRET) -> LineChannel:
    return LineChannel(None, secret)  # type: ignore[arg-type]  # webhooks need no HTTP


def signed(events: list[dict[str, Any]], secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    body = callback_body(BOT, events)
    return {"x-line-signature": sign(secret, body)}, body


@pytest.fixture
def events(emulator: LineEmulator) -> EventFactory:
    return emulator.events


def test_follow_unfollow_message_and_postback(events: EventFactory) -> None:
    batch = [
        events.follow(ALICE, timestamp_ms=T0),
        events.text_message(ALICE, "hello", timestamp_ms=T0 + 1),
        events.postback(ALICE, "action=buy", params={"date": "2025-01-01"}, timestamp_ms=T0 + 2),
        events.unfollow(ALICE, timestamp_ms=T0 + 3),
    ]
    headers, body = signed(batch)
    assert check_webhook_body(body, headers) == []

    parsed = channel().parse_webhook(headers, body)

    assert [e.kind for e in parsed] == [
        InteractionKind.FOLLOW,
        InteractionKind.MESSAGE,
        InteractionKind.POSTBACK,
        InteractionKind.UNFOLLOW,
    ]
    assert [e.event_id for e in parsed] == [e["webhookEventId"] for e in batch]
    assert {e.external_id for e in parsed} == {ALICE}
    assert parsed[0].timestamp == datetime(2025, 6, 15, 15, 6, 40, 123_000, tzinfo=UTC)
    assert [e.timestamp.microsecond // 1000 for e in parsed] == [123, 124, 125, 126]
    assert not any(e.is_redelivery for e in parsed)


def test_a_redelivered_event_is_flagged(events: EventFactory) -> None:
    original = events.text_message(ALICE, "hi", timestamp_ms=T0)
    headers, body = signed([EventFactory.redelivered(original)])
    assert check_webhook_body(body, headers) == []

    [event] = channel().parse_webhook(headers, body)

    assert event.is_redelivery
    assert event.event_id == original["webhookEventId"]


def test_the_connectivity_check_has_no_events() -> None:
    headers, body = signed([])

    assert channel().parse_webhook(headers, body) == []


def _group_event(events: EventFactory, kind: str) -> dict[str, Any]:
    event = events.text_message(ALICE, "in the group", timestamp_ms=T0)
    event["source"] = {
        "type": kind,
        "groupId" if kind == "group" else "roomId": GROUP,
        "userId": ALICE,
    }
    return event


def test_group_and_room_events_are_skipped(events: EventFactory) -> None:
    batch = [
        _group_event(events, "group"),
        _group_event(events, "room"),
        events.follow(ALICE, timestamp_ms=T0),
    ]
    headers, body = signed(batch)
    assert check_webhook_body(body, headers) == []

    parsed = channel().parse_webhook(headers, body)

    assert [e.kind for e in parsed] == [InteractionKind.FOLLOW]


def test_other_user_actions_are_interactions_and_platform_notices_are_not(
    events: EventFactory,
) -> None:
    beacon = events.follow(ALICE, timestamp_ms=T0)
    beacon["type"] = "beacon"
    del beacon["follow"]
    beacon["beacon"] = {"hwid": "d41d8cd98f", "type": "enter"}
    played = events.follow(ALICE, timestamp_ms=T0 + 1)
    played["type"] = "videoPlayComplete"
    del played["follow"]
    played["videoPlayComplete"] = {"trackingId": "track-1"}
    suspended = {
        "type": "botSuspended",
        "mode": "active",
        "timestamp": T0 + 2,
        "webhookEventId": "01J0000000000000000000000Z",
        "deliveryContext": {"isRedelivery": False},
    }
    headers, body = signed([beacon, played, suspended])
    assert check_webhook_body(body, headers) == []

    parsed = channel().parse_webhook(headers, body)

    assert [(e.kind, e.external_id) for e in parsed] == [
        (InteractionKind.OTHER, ALICE),
        (InteractionKind.OTHER, ALICE),
    ]


def test_a_bad_or_missing_signature_is_rejected(events: EventFactory) -> None:
    headers, body = signed([events.follow(ALICE, timestamp_ms=T0)])
    wrong_key, _ = signed([events.follow(ALICE, timestamp_ms=T0)], secret="other")

    for bad in (
        {},
        {"x-line-signature": ""},
        {"x-line-signature": "not base64 at all ✓"},
        {"x-line-signature": wrong_key["x-line-signature"]},
        {"x-line-signature": sign(SECRET, body + b" ")},
    ):
        with pytest.raises(WebhookRejected):
            channel().parse_webhook(bad, body)
    with pytest.raises(WebhookRejected):
        channel().parse_webhook(headers, body.replace(b"follow", b"unfollow", 1))


def test_the_header_name_is_case_insensitive(events: EventFactory) -> None:
    headers, body = signed([events.follow(ALICE, timestamp_ms=T0)])

    parsed = channel().parse_webhook({"X-Line-Signature": headers["x-line-signature"]}, body)

    assert len(parsed) == 1


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    with pytest.raises(WebhookRejected):
        channel().parse_webhook({"x-line-signature": "AAAA"}, b"{not json")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"destination": "x"}',
    ],
)
def test_a_signed_body_we_cannot_read_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(MalformedWebhook) as raised:
        channel().parse_webhook({"x-line-signature": sign(SECRET, body)}, body)

    assert isinstance(raised.value, ValueError)


def _refusal(item: object) -> EventRefusal | None:
    return item.refusal if isinstance(item, RefusedEvent) else None


def test_events_that_line_never_sends_are_refused_one_by_one(events: EventFactory) -> None:
    def follow(**changes: Any) -> dict[str, Any]:
        event = events.follow(ALICE, timestamp_ms=T0)
        source = changes.pop("source", None)
        if source is not None:
            event["source"] = {"type": "user", "userId": source}
        event.update(changes)
        return event

    batch: list[Any] = [
        1,
        {"source": {"type": "user", "userId": ALICE}},
        follow(source="U" + "1" * 5000),
        follow(source="nul\x00" + "1" * 28),
        follow(source="U" + "A" * 32),
        follow(source=42),
        follow(webhookEventId="01J00000000000\x000000000000"),
        follow(webhookEventId="x" * 5000),
        follow(timestamp="soon"),
        follow(timestamp=10**20),
        follow(),
    ]
    headers, body = signed(batch)

    parsed = channel().parse_webhook(headers, body)

    assert [_refusal(item) for item in parsed] == [
        EventRefusal.MALFORMED,
        EventRefusal.MALFORMED,
        *[EventRefusal.INVALID_ID] * 6,
        *[EventRefusal.INVALID_TIMESTAMP] * 2,
        None,
    ]
    assert isinstance(parsed[-1], InteractionEvent) and parsed[-1].external_id == ALICE


def test_the_patterns_are_webhook_ymls() -> None:
    spec = yaml.safe_load((SPEC_DIR / "webhook.yml").read_text())
    schemas = spec["components"]["schemas"]
    # The spec states the user id pattern on `destination` (the bot's user id).
    assert schemas["CallbackRequest"]["properties"]["destination"]["pattern"] == (
        f"^{webhook.USER_ID.pattern}$"
    )
    assert "ULID" in schemas["Event"]["properties"]["webhookEventId"]["description"]


@given(st.text(max_size=80))
def test_only_line_shaped_user_ids_get_through(user_id: str) -> None:
    event = {
        "type": "follow",
        "mode": "active",
        "timestamp": T0,
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": "01J0000000000000000000000Z",
        "deliveryContext": {"isRedelivery": False},
    }
    headers, body = signed([event])

    (parsed,) = channel().parse_webhook(headers, body) or [None]

    if re.fullmatch(r"U[0-9a-f]{32}", user_id):
        assert isinstance(parsed, InteractionEvent) and parsed.external_id == user_id
    else:
        assert parsed is None or _refusal(parsed) is EventRefusal.INVALID_ID


@given(st.text(max_size=40), st.integers(min_value=-(2**70), max_value=2**70))
def test_event_ids_and_timestamps_are_refused_never_raised(event_id: str, ts: int) -> None:
    event = {
        "type": "message",
        "mode": "active",
        "timestamp": ts,
        "source": {"type": "user", "userId": ALICE},
        "webhookEventId": event_id,
        "deliveryContext": {"isRedelivery": False},
    }
    headers, body = signed([event])

    (parsed,) = channel().parse_webhook(headers, body)

    if isinstance(parsed, InteractionEvent):
        assert len(parsed.event_id) == 26 and parsed.event_id.isascii()
        assert parsed.event_id.isalnum()
    else:
        assert parsed.refusal in (EventRefusal.INVALID_ID, EventRefusal.INVALID_TIMESTAMP)


@given(st.binary(max_size=200), st.text(max_size=60))
def test_unsigned_garbage_is_always_rejected(body: bytes, signature: str) -> None:
    with pytest.raises(WebhookRejected):
        channel().parse_webhook({"x-line-signature": signature}, body)


@dataclass
class Receiver:
    """A webhook endpoint that hands each request to a LineChannel, as the core's does."""

    secret: str = ""
    url: str = ""
    events: list[InteractionEvent] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.events.extend(channel(self.secret).parse_webhook(request.headers, body))
        except WebhookRejected:
            self.statuses.append(401)
            return web.json_response({"message": "bad signature"}, status=401)
        self.statuses.append(200)
        return web.json_response({})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/line/{channel}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}/webhooks/line/ch1"
    yield found
    await runner.cleanup()


async def test_signed_posts_from_the_emulator(emulator: LineEmulator, receiver: Receiver) -> None:
    shop: Account = emulator.add_account(followers=2)
    receiver.secret = shop.channel_secret
    follow = emulator.follow(shop, timestamp_ms=T0)
    message = emulator.events.text_message(follow["source"]["userId"], "hi", timestamp_ms=T0 + 5)
    sender = emulator.webhook_sender(shop)

    good = await sender.post(receiver.url, [follow, message])
    bad = await sender.post(receiver.url, [message], bad_signature=True)
    unsigned = await sender.post(receiver.url, [message], omit_signature=True)
    check = await sender.connectivity_check(receiver.url)

    assert (good.status, bad.status, unsigned.status, check.status) == (200, 401, 401, 200)
    assert check_webhook_body(good.request_body, {"x-line-signature": good.signature}) == []
    assert [(e.kind, e.event_id) for e in receiver.events] == [
        (InteractionKind.FOLLOW, follow["webhookEventId"]),
        (InteractionKind.MESSAGE, message["webhookEventId"]),
    ]
