"""Sending: push, multicast and broadcast, their limits and LINE's error answers."""

from __future__ import annotations

from typing import Any

import aiohttp
from broadcaster_line_emulator import Account, LineEmulator
from broadcaster_line_emulator.conformance import ConformanceRecorder
from emulator_support import LineApi, text

TEN_MB_PICTURE = "https://cdn.example.com/pictures/launch.jpg"


async def test_multicast_delivers_to_each_recipient_once_and_charges_them(
    emulator: LineEmulator, shop: Account, api: LineApi, conformance: ConformanceRecorder
) -> None:
    emulator.set_quota(shop, 10_000)
    to = emulator.follower_ids(shop)[:500]

    reply = await api.multicast(to, text("Spring sale"))

    assert reply.status == 200
    assert reply.body == {}
    assert reply.request_id
    assert shop.quota.usage == 500
    assert all(emulator.times_received(shop, user) == 1 for user in to)
    [delivery] = emulator.received(to[0])
    assert delivery.request_id == reply.request_id
    assert delivery.messages == ({"type": "text", "text": "Spring sale"},)
    assert delivery.retry_key is None
    assert emulator.times_received(shop, emulator.follower_ids(shop)[500]) == 0
    conformance.assert_clean()


async def test_blocked_unknown_and_repeated_recipients_get_nothing_and_cost_nothing(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    friends = emulator.follower_ids(shop)[:3]
    emulator.block(shop, friends[1])
    stranger = "U" + "0" * 32

    reply = await api.multicast([friends[0], friends[1], stranger, friends[2], friends[0]])

    assert reply.status == 200
    assert shop.quota.usage == 2
    assert [emulator.times_received(shop, u) for u in friends] == [1, 0, 1]
    assert emulator.received(stranger) == []
    assert emulator.stats.undelivered["multicast"] == 3


async def test_malformed_recipient_is_named_by_index_and_nobody_receives(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    to = emulator.follower_ids(shop)[:4]
    to[2] = "U12345"

    reply = await api.multicast(to)

    assert reply.status == 400
    assert (
        reply.message == "The property, to[2], in the request body is invalid (line: -, column: -)"
    )
    assert reply.detail_properties == ["to[2]"]
    assert shop.deliveries.total_deliveries == 0
    assert shop.quota.usage == 0


async def test_multicast_size_limits(emulator: LineEmulator, shop: Account, api: LineApi) -> None:
    ids = emulator.follower_ids(shop)

    too_many = await api.multicast(ids[:501])
    none = await api.multicast([])
    six_messages = await api.multicast(ids[:1], text("x") * 6)
    no_messages = await api.multicast(ids[:1], [])
    exactly = await api.multicast(ids[:500], text("x") * 5)

    assert too_many.status == 400
    assert too_many.message == "The request body has 1 error(s)"
    assert too_many.body["details"] == [
        {"message": "Size must be between 1 and 500", "property": "to"}
    ]
    assert none.status == 400 and none.detail_properties == ["to"]
    assert six_messages.status == 400 and six_messages.detail_properties == ["messages"]
    assert no_messages.status == 400 and no_messages.detail_properties == ["messages"]
    assert exactly.status == 200


async def test_text_is_measured_in_utf16_code_units(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    user = emulator.follower_ids(shop)[:1]
    emoji = "\U0001f600"  # outside the BMP: two UTF-16 code units

    at_limit = await api.multicast(user, text(emoji * 2_500))
    one_over = await api.multicast(user, text("a" * 4_999 + emoji))
    plain_over = await api.multicast(user, text("a" * 5_001))
    empty = await api.multicast(user, text(""))

    assert at_limit.status == 200
    for reply in (one_over, plain_over):
        assert reply.status == 400
        assert reply.body["details"] == [
            {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}
        ]
    assert empty.body["details"] == [
        {"message": "May not be empty", "property": "messages[0].text"}
    ]


async def test_image_urls_must_be_https_and_at_most_2000_characters(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    user = emulator.follower_ids(shop)[:1]
    long_url = "https://cdn.example.com/" + "p" * (2_001 - len("https://cdn.example.com/"))
    good = {
        "type": "image",
        "originalContentUrl": TEN_MB_PICTURE,
        "previewImageUrl": TEN_MB_PICTURE,
    }

    ok = await api.multicast(user, [good])
    http_url = await api.multicast(
        user, [{**good, "previewImageUrl": "http://cdn.example.com/p.jpg"}]
    )
    too_long = await api.multicast(user, [text("hi")[0], {**good, "originalContentUrl": long_url}])
    missing = await api.multicast(user, [{"type": "image", "originalContentUrl": TEN_MB_PICTURE}])

    assert ok.status == 200
    assert http_url.status == 400
    assert http_url.detail_properties == ["messages[0].previewImageUrl"]
    assert too_long.detail_properties == ["messages[1].originalContentUrl"]
    assert too_long.body["details"][0]["message"] == "Length must be between 0 and 2000"
    assert missing.body["details"] == [
        {"message": "must be specified", "property": "messages[0].previewImageUrl"}
    ]


async def test_unknown_message_type_lists_the_valid_ones(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    reply = await api.multicast(emulator.follower_ids(shop)[:1], [{"type": "hologram"}])

    assert reply.status == 400
    [detail] = reply.body["details"]
    assert detail["property"] == "messages[0].type"
    assert detail["message"].startswith(
        "Must be one of the following values: [text, textV2, sticker"
    )


async def test_unparsable_body_wrong_content_type_and_oversized_body(
    http: aiohttp.ClientSession, shop: Account, api: LineApi
) -> None:
    headers = {"Content-Type": "application/json"}
    broken = await api.call(
        "POST", "/v2/bot/message/multicast", data=b'{"to": [\n}', headers=headers
    )
    form = await api.call(
        "POST",
        "/v2/bot/message/multicast",
        data=b"to=U1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    huge = await api.call(
        "POST", "/v2/bot/message/multicast", data=b" " * (2 * 1024 * 1024 + 1), headers=headers
    )

    assert broken.status == 400
    assert broken.message == "The request body could not be parsed as JSON (line: 2, column: 1)"
    assert form.status == 400
    assert form.message == "The content type, application/x-www-form-urlencoded, is not supported"
    assert huge.status == 413


async def test_push_returns_sent_messages_and_delivers(
    emulator: LineEmulator, shop: Account, api: LineApi, conformance: ConformanceRecorder
) -> None:
    user = emulator.follower_ids(shop)[7]
    sticker = {"type": "sticker", "packageId": "446", "stickerId": "1988"}
    location = {
        "type": "location",
        "title": "Shop",
        "address": "1 Main St",
        "latitude": 35.6,
        "longitude": 139.7,
    }

    reply = await api.push(user, [text("Your order shipped")[0], sticker, location])

    assert reply.status == 200
    sent = reply.body["sentMessages"]
    assert len(sent) == 3
    assert all(m["id"].isdigit() for m in sent)
    assert "quoteToken" in sent[0] and "quoteToken" in sent[1] and "quoteToken" not in sent[2]
    assert emulator.times_received(shop, user) == 1
    assert shop.quota.usage == 1
    conformance.assert_clean()


async def test_push_to_unknown_blocked_and_malformed_users(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    blocked = emulator.follower_ids(shop)[0]
    emulator.block(shop, blocked)

    unknown = await api.push("U" + "f" * 32)
    group = await api.push("C" + "f" * 32)
    to_blocked = await api.push(blocked)
    malformed = await api.push("someone")

    assert (unknown.status, unknown.message) == (400, "Failed to send messages")
    assert (group.status, group.message) == (400, "Failed to send messages")
    assert to_blocked.status == 200  # LINE accepts it but the user never sees it
    assert emulator.times_received(shop, blocked) == 0
    assert shop.quota.usage == 0
    assert malformed.status == 400 and malformed.detail_properties == ["to"]


async def test_broadcast_reaches_every_follower_who_has_not_blocked(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    ids = emulator.follower_ids(shop)
    emulator.block(shop, ids[10])
    extra = emulator.add_follower(shop, display_name="Walk-in customer")

    reply = await api.broadcast(text("We are open on Sunday"))

    assert reply.status == 200 and reply.body == {}
    assert shop.deliveries.total_deliveries == len(ids)  # 1,200 - 1 blocked + 1 new
    assert shop.quota.usage == len(ids)
    assert emulator.times_received(shop, ids[10]) == 0
    assert emulator.times_received(shop, extra.user_id) == 1
    assert shop.deliveries.positions_received_more_than_once() == []


async def test_missing_malformed_and_unknown_tokens_get_401(
    emulator: LineEmulator, http: aiohttp.ClientSession, shop: Account
) -> None:
    anonymous = await LineApi(http, None).bot_info()
    basic = await LineApi(http, None).call(
        "GET", "/v2/bot/info", headers={"Authorization": "Basic abc"}
    )
    wrong = await LineApi(http, "not-a-token").bot_info()
    old_token = shop.access_token
    emulator.rotate_token(shop)
    rotated_out = await LineApi(http, old_token).bot_info()
    current = await LineApi(http, shop.access_token).bot_info()
    emulator.revoke_token(shop)
    revoked = await LineApi(http, shop.access_token).bot_info()

    required = (
        "Authorization header required. Must follow the scheme, "
        "'Authorization: Bearer <ACCESS TOKEN>'"
    )
    failed = (
        "Authentication failed. Confirm that the access token in the authorization header is valid."
    )
    assert (anonymous.status, anonymous.message) == (401, required)
    assert (basic.status, basic.message) == (401, required)
    assert (wrong.status, wrong.message) == (401, failed)
    assert (rotated_out.status, revoked.status, current.status) == (401, 401, 200)


async def test_bot_info_per_tier(emulator: LineEmulator, http: aiohttp.ClientSession) -> None:
    verified = emulator.add_account(tier="verified", display_name="Corner Bakery")
    premium = emulator.add_account(tier="premium", display_name="Big Store")

    v = await LineApi(http, verified.access_token).bot_info()
    p = await LineApi(http, premium.access_token).bot_info()

    assert v.status == p.status == 200
    assert v.body["userId"] == verified.bot_user_id
    assert v.body["displayName"] == "Corner Bakery"
    assert v.body["basicId"].startswith("@")
    assert (v.body["chatMode"], v.body["markAsReadMode"]) == ("bot", "auto")
    assert "premiumId" not in v.body
    assert p.body["premiumId"] == "@bigstore"


async def test_quota_and_consumption(emulator: LineEmulator, shop: Account, api: LineApi) -> None:
    unlimited = await api.quota()
    emulator.set_quota(shop, 5_000, usage=1_234)
    limited = await api.quota()
    consumption = await api.consumption()

    assert unlimited.body == {"type": "none"}
    assert limited.body == {"type": "limited", "value": 5_000}
    assert consumption.body == {"totalUsage": 1_234}


async def test_every_endpoint_answers_within_the_spec(
    emulator: LineEmulator, shop: Account, api: LineApi, conformance: ConformanceRecorder
) -> None:
    user = emulator.follower_ids(shop)[0]
    emulator.set_quota(shop, 100)
    await api.bot_info()
    await api.quota()
    await api.consumption()
    page = await api.followers(limit=5)
    await api.followers(start=page.body["next"])
    await api.profile(user)
    await api.push(user)
    await api.multicast([user], retry_key="123e4567-e89b-12d3-a456-426614174000")
    await api.multicast([user], retry_key="123e4567-e89b-12d3-a456-426614174000")
    await api.broadcast()

    assert conformance.checked == 10
    conformance.assert_clean()


CARD = {
    "type": "bubble",
    "body": {
        "type": "box",
        "layout": "vertical",
        "contents": [{"type": "text", "text": "Linen shirt"}],
    },
}
RICH_KINDS: list[dict[str, Any]] = [
    {"type": "sticker", "packageId": "446", "stickerId": "1988"},
    {
        "type": "video",
        "originalContentUrl": "https://cdn.example.com/v.mp4",
        "previewImageUrl": TEN_MB_PICTURE,
        "trackingId": "sale-1",
    },
    {"type": "flex", "altText": "Picks", "contents": {"type": "carousel", "contents": [CARD] * 2}},
    {
        "type": "template",
        "altText": "Sure?",
        "template": {
            "type": "confirm",
            "text": "Join?",
            "actions": [{"type": "message", "label": a, "text": a} for a in ("Yes", "No")],
        },
        "quickReply": {
            "items": [{"type": "action", "action": {"type": "location", "label": "Near me"}}]
        },
    },
]


async def test_stickers_videos_cards_and_quick_replies_are_recorded_as_sent(
    emulator: LineEmulator, shop: Account, api: LineApi, conformance: ConformanceRecorder
) -> None:
    [user] = emulator.follower_ids(shop)[:1]

    reply = await api.multicast([user], RICH_KINDS, notificationDisabled=True)

    assert reply.status == 200
    [delivery] = emulator.received(user)
    assert list(delivery.messages) == RICH_KINDS
    assert shop.deliveries.sends[-1].notification_disabled
    conformance.assert_clean()


async def test_a_refused_card_is_named_and_nothing_is_delivered(
    emulator: LineEmulator, shop: Account, api: LineApi
) -> None:
    [user] = emulator.follower_ids(shop)[:1]
    carousel = {"type": "carousel", "contents": [CARD] * 13}

    reply = await api.multicast(
        [user], [RICH_KINDS[0], {"type": "flex", "altText": "Picks", "contents": carousel}]
    )

    assert reply.status == 400
    assert reply.detail_properties == ["messages[1].contents.contents"]
    assert emulator.received(user) == []
    assert shop.quota.usage == 0


async def test_validate_multicast_checks_messages_and_sends_nothing(
    emulator: LineEmulator, shop: Account, api: LineApi, conformance: ConformanceRecorder
) -> None:
    path = "/v2/bot/message/validate/multicast"
    carousel = {"type": "carousel", "contents": [CARD] * 13}

    ok = await api.call("POST", path, json={"messages": RICH_KINDS})
    refused = await api.call(
        "POST",
        path,
        json={"messages": [RICH_KINDS[0], {"type": "flex", "altText": "x", "contents": carousel}]},
    )

    assert (ok.status, ok.body) == (200, {})
    assert refused.status == 400
    assert refused.detail_properties == ["messages[1].contents.contents"]
    assert list(shop.deliveries.sends) == [] and shop.quota.usage == 0
    conformance.assert_clean()
