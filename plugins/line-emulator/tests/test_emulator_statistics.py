"""Statistics per unit: unit names on sends, the monthly allowance, the unit lists, and the
insight endpoint's figures (withheld below 20, growing after the send, frozen after 14 days).
Every answer is checked against the specs by the `emulator` fixture's recorder; each test also
asserts its requests followed them."""

from __future__ import annotations

from typing import Any

from broadcaster_line_emulator import Account, Engagement, LineEmulator, ManualClock
from broadcaster_line_emulator.aggregation import (
    MONTHLY_UNIT_ALLOWANCE,
    PRIVACY_THRESHOLD,
    message_urls,
)
from broadcaster_line_emulator.conformance import ConformanceRecorder
from broadcaster_line_emulator.ratelimit import DEFAULT_RATES, Rate
from emulator_support import LineApi, text

TODAY = "20250616"  # the ManualClock's start, in JST
HOUR = 3600.0

BUTTONS: dict[str, Any] = {
    "type": "template",
    "altText": "Sale",
    "template": {
        "type": "buttons",
        "text": "Winter sale",
        "actions": [{"type": "uri", "label": "Shop", "uri": "https://shop.example/sale"}],
    },
}
VIDEO: dict[str, Any] = {
    "type": "video",
    "originalContentUrl": "https://cdn.example/v.mp4",
    "previewImageUrl": "https://cdn.example/v.jpg",
}


def requests_clean(conformance: ConformanceRecorder) -> None:
    problems = [v for v in conformance.violations if v.kind == "request"]
    assert not problems, "\n".join(map(str, problems))


async def stats(api: LineApi, unit: str, start: str = TODAY, end: str = TODAY) -> Any:
    params = {"customAggregationUnit": unit, "from": start, "to": end}
    return await api.call("GET", "/v2/bot/insight/message/event/aggregation", params=params)


def test_line_documented_limits() -> None:
    assert MONTHLY_UNIT_ALLOWANCE == 1_000
    assert PRIVACY_THRESHOLD == 20
    assert DEFAULT_RATES["statistics_per_unit"] == Rate(60, 3_600.0)
    assert message_urls(BUTTONS) == ["https://shop.example/sale"]
    assert message_urls(text("see https://x.example")[0]) == []  # typed URLs are not tracked


async def test_units_on_sends_and_the_monthly_lists(
    emulator: LineEmulator, api: LineApi, shop: Account, conformance: ConformanceRecorder
) -> None:
    users = emulator.follower_ids(shop)
    for unit in ("promo_a", "promo_b", "promo_a"):
        sent = await api.multicast(users[:2], customAggregationUnits=[unit])
        assert sent.status == 200
    pushed = await api.call(
        "POST",
        "/v2/bot/message/push",
        json={"to": users[0], "messages": text(), "customAggregationUnits": ["promo_c"]},
    )
    info = await api.call("GET", "/v2/bot/message/aggregation/info")
    first = await api.call("GET", "/v2/bot/message/aggregation/list", params={"limit": "2"})
    rest = await api.call(
        "GET", "/v2/bot/message/aggregation/list", params={"start": first.body["next"]}
    )
    bad_limit = await api.call("GET", "/v2/bot/message/aggregation/list", params={"limit": "101"})
    bad_start = await api.call("GET", "/v2/bot/message/aggregation/list", params={"start": "x"})

    assert pushed.status == 200
    assert info.body == {"numOfCustomAggregationUnits": 3}
    assert first.body["customAggregationUnits"] == ["promo_a", "promo_b"]
    assert rest.body == {"customAggregationUnits": ["promo_c"]}
    assert (bad_limit.status, bad_start.status) == (400, 400)
    requests_clean(conformance)


async def test_unit_names_are_checked(api: LineApi, emulator: LineEmulator, shop: Account) -> None:
    users = emulator.follower_ids(shop)
    two = await api.multicast(users[:1], customAggregationUnits=["a", "b"])
    bad = await api.multicast(users[:1], customAggregationUnits=["no-dashes"])
    long = await api.multicast(users[:1], customAggregationUnits=["x" * 31])
    on_broadcast = await api.call(
        "POST",
        "/v2/bot/message/broadcast",
        json={"messages": text(), "customAggregationUnits": ["a"]},
    )

    assert two.status == bad.status == long.status == on_broadcast.status == 400
    assert bad.detail_properties == ["customAggregationUnits[0]"]
    assert emulator.received(users[0], shop) == []


async def test_allowance_refuses_a_new_unit_and_resets_next_month(
    emulator: LineEmulator, api: LineApi, shop: Account, clock: ManualClock
) -> None:
    emulator.set_engagement(shop, unit_allowance=2)
    users = emulator.follower_ids(shop)
    for unit in ("u1", "u2"):
        assert (await api.multicast(users[:1], customAggregationUnits=[unit])).status == 200
    refused = await api.multicast(users[1:2], customAggregationUnits=["u3"])
    known = await api.multicast(users[1:2], customAggregationUnits=["u1"])
    clock.advance(31 * 24 * HOUR)
    next_month = await api.multicast(users[1:2], customAggregationUnits=["u3"])

    assert refused.status == 400
    assert refused.detail_properties == ["customAggregationUnits"]
    assert known.status == 200
    assert next_month.status == 200
    assert len(emulator.received(users[1], shop)) == 2  # the refused send delivered nothing


async def test_statistics_grow_after_the_send_and_stop_after_14_days(
    emulator: LineEmulator, api: LineApi, shop: Account, clock: ManualClock
) -> None:
    emulator.set_engagement(shop, Engagement(open_rate=0.5, click_rate=0.1, play_rate=0.2))
    users = emulator.follower_ids(shop)
    for batch in (users[:500], users[500:1000]):
        sent = await api.multicast(batch, [BUTTONS, VIDEO], customAggregationUnits=["winter"])
        assert sent.status == 200
    at_once = await stats(api, "winter")
    clock.advance(2 * HOUR)
    early = await stats(api, "winter")
    clock.advance(46 * HOUR)
    later = await stats(api, "winter")
    clock.advance(20 * 24 * HOUR)
    frozen = await stats(api, "winter")
    clock.advance(24 * HOUR)
    still = await stats(api, "winter")

    assert at_once.body == {
        "overview": {
            "uniqueImpression": None,
            "uniqueClick": None,
            "uniqueMediaPlayed": None,
            "uniqueMediaPlayed100Percent": None,
        },
        "messages": [],
        "clicks": [],
    }
    opened_early = early.body["overview"]["uniqueImpression"]
    opened = later.body["overview"]["uniqueImpression"]
    assert 0 < opened_early < opened <= 1000
    assert 450 <= opened <= 550  # about half of the 1,000 recipients
    assert 90 <= later.body["overview"]["uniqueClick"] <= 110
    assert [m["seq"] for m in later.body["messages"]] == [1, 2]
    assert later.body["messages"][0]["mediaPlayed"] is None  # a template has no media
    assert later.body["messages"][1]["uniqueMediaPlayed"] >= PRIVACY_THRESHOLD
    assert later.body["clicks"][0]["url"] == "https://shop.example/sale"
    assert later.body["clicks"][0]["seq"] == 1
    assert frozen.body == still.body


async def test_small_units_are_withheld(
    emulator: LineEmulator, api: LineApi, shop: Account, clock: ManualClock
) -> None:
    users = emulator.follower_ids(shop)
    await api.multicast(users[:30], [BUTTONS], customAggregationUnits=["tiny"])
    clock.advance(48 * HOUR)
    reply = await stats(api, "tiny")
    unknown = await stats(api, "never_used")

    assert reply.body["overview"]["uniqueImpression"] is None  # 40 % of 30 is under 20
    assert reply.body["messages"] == reply.body["clicks"] == []
    assert unknown.status == 200 and unknown.body["messages"] == []


async def test_insight_query_is_checked_like_line(api: LineApi) -> None:
    bodies = [
        await stats(api, "bad-name"),
        await stats(api, "ok", "2025061", TODAY),
        await stats(api, "ok", "20250230", TODAY),
        await stats(api, "ok", "20250601", "20250702"),  # 31 days
        await stats(api, "ok", TODAY, "20250615"),  # ends before it starts
        await api.call("GET", "/v2/bot/insight/message/event/aggregation"),
    ]
    within = await stats(api, "ok", "20250601", "20250701")  # 30 days

    for reply in bodies:
        assert reply.status == 400
        assert reply.body == {"message": None, "key": None, "stacktrace": None, "code": None}
    assert within.status == 200


async def test_insight_rate_limit_is_60_an_hour(
    emulator: LineEmulator, api: LineApi, clock: ManualClock
) -> None:
    answers = [(await stats(api, "u")).status for _ in range(61)]
    clock.advance(60.0)  # one more request's worth
    again = await stats(api, "u")

    assert answers.count(200) == 60
    assert answers[-1] == 429
    assert again.status == 200


async def test_engagement_is_set_through_the_control_api(
    emulator: LineEmulator, shop: Account, http: Any
) -> None:
    path = f"/_emulator/accounts/{shop.channel_id}/statistics"
    async with http.put(
        path, json={"engagement": {"openRate": 0.8, "clickRate": 0.2}, "unitAllowance": 5}
    ) as resp:
        body = await resp.json()
    async with http.put(path, json={"engagement": {"clickRate": 0.9}}) as refused:
        error = await refused.json()

    assert body["engagement"]["openRate"] == 0.8
    assert body["unitAllowance"] == 5
    assert shop.engagement.click_rate == 0.2
    assert refused.status == 400 and "open" in error["error"]
