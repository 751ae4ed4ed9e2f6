"""The webhook settings endpoints per messaging-api.yml: get and set the endpoint, and the test
that posts a signed webhook with no events to it, as LINE's "Verify" does, reporting
success, statusCode, reason and detail."""

from __future__ import annotations

import json

import pytest
from broadcaster_line_emulator import Account, LineEmulator
from broadcaster_line_emulator.conformance import ConformanceRecorder, check_webhook_body
from emulator_support import LineApi
from test_emulator_webhooks import Receiver
from test_emulator_webhooks import receiver as receiver

ENDPOINT = "/v2/bot/channel/webhook/endpoint"
TEST = "/v2/bot/channel/webhook/test"


async def test_set_get_and_test_the_endpoint(
    api: LineApi, shop: Account, receiver: Receiver, conformance: ConformanceRecorder
) -> None:
    unset = await api.call("GET", ENDPOINT)
    assert unset.status == 404  # no URL was ever set
    assert (await api.call("POST", TEST)).status == 400  # nothing to test

    put = await api.call("PUT", ENDPOINT, json={"endpoint": receiver.url})
    assert (put.status, put.body) == (200, {})
    got = await api.call("GET", ENDPOINT)
    assert (got.status, got.body) == (200, {"endpoint": receiver.url, "active": True})

    tested = await api.call("POST", TEST)
    assert tested.status == 200 and tested.body is not None
    assert {k: tested.body[k] for k in ("success", "statusCode", "reason", "detail")} == {
        "success": True,
        "statusCode": 200,
        "reason": "OK",
        "detail": "200",
    }
    assert tested.body["timestamp"].endswith("Z")
    # What the receiver got: a signed body with no events, to the bot's own id.
    ((headers, body),) = receiver.received
    assert json.loads(body) == {"destination": shop.bot_user_id, "events": []}
    assert headers["User-Agent"].startswith("LineBotWebhook/")
    assert check_webhook_body(body) == []
    assert conformance.violations == []


async def test_a_failing_endpoint_is_reported_not_raised(
    api: LineApi, shop: Account, receiver: Receiver, emulator: LineEmulator
) -> None:
    # A URL that answers 404: tested through the request's own `endpoint`.
    missing = receiver.url.replace("/webhooks/line/shop", "/nowhere")
    tested = await api.call("POST", TEST, json={"endpoint": missing})
    assert tested.body is not None
    assert (tested.status, tested.body["success"], tested.body["statusCode"]) == (200, False, 404)
    assert tested.body["reason"] == "Not Found" and tested.body["detail"] == "404"

    # A receiver that refuses the signature (another channel's secret).
    receiver.secret = "not-the-secret"
    refused = await api.call("POST", TEST, json={"endpoint": receiver.url})
    assert refused.body is not None and refused.body["statusCode"] == 401
    assert not refused.body["success"]

    # Nothing listens there: no status at all.
    closed = await api.call("POST", TEST, json={"endpoint": "http://127.0.0.1:9/hook"})
    assert closed.body is not None
    assert (closed.body["success"], closed.body["statusCode"]) == (False, 0)
    assert closed.body["reason"] == "COULD_NOT_CONNECT" and closed.body["detail"]


@pytest.mark.parametrize(
    ("body", "prop_message"),
    [
        ({}, "Must not be null"),
        ({"endpoint": 5}, "Must be a string"),
        ({"endpoint": "https://x.example/" + "a" * 500}, "Length must be between 0 and 500"),
        ({"endpoint": "http://bot.example/hook"}, "use an HTTPS URL"),
        ({"endpoint": "not a url"}, "use an HTTPS URL"),
    ],
)
async def test_bad_endpoints_are_refused(
    api: LineApi, shop: Account, body: dict[str, object], prop_message: str
) -> None:
    put = await api.call("PUT", ENDPOINT, json=body)
    assert put.status == 400 and put.body is not None
    (detail,) = put.body["details"]
    assert detail["property"] == "endpoint" and prop_message in detail["message"]
    assert shop.webhook_endpoint is None


async def test_a_token_is_required(http, shop: Account) -> None:  # type: ignore[no-untyped-def]
    anonymous = LineApi(http, None)
    assert (await anonymous.call("GET", ENDPOINT)).status == 401
    assert (await anonymous.call("PUT", ENDPOINT, json={"endpoint": "https://x"})).status == 401
