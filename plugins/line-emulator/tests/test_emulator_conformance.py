"""The conformance helper itself: it must catch what the spec forbids, or it proves nothing."""

from __future__ import annotations

import json

import aiohttp
from broadcaster_line_emulator import Account, LineEmulator
from broadcaster_line_emulator.conformance import ConformanceRecorder, check_request, check_response
from emulator_support import LineApi

AUTH = {"Authorization": "Bearer token", "Content-Type": "application/json"}
USER = "U" + "a" * 32


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_a_valid_multicast_request_passes() -> None:
    body = _body(
        {"to": [USER], "messages": [{"type": "text", "text": "hi"}], "notificationDisabled": True}
    )
    assert check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body) == []


def test_undeclared_fields_and_bad_message_objects_are_violations() -> None:
    body = _body(
        {"to": [USER], "messages": [{"type": "text"}, {"type": "hologram"}], "priority": "high"}
    )

    messages = [
        v.message
        for v in check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body)
    ]

    assert any("'text' is a required property (as TextMessage)" in m for m in messages)
    assert any("/messages/1/type: 'hologram' is not one of" in m for m in messages)
    assert "/priority: property not declared by the spec" in messages


def test_limits_in_the_schema_are_enforced() -> None:
    body = _body({"to": [USER] * 501, "messages": [{"type": "text", "text": "x"}]})

    violations = check_request("POST", "/v2/bot/message/multicast", headers=AUTH, body=body)

    assert violations and all(v.kind == "request" for v in violations)


def test_headers_auth_and_unknown_operations() -> None:
    retry_on_get = check_request(
        "GET",
        "/v2/bot/info",
        headers={**AUTH, "X-Line-Retry-Key": "123e4567-e89b-12d3-a456-426614174000"},
    )
    bad_key = check_request(
        "POST",
        "/v2/bot/message/push",
        headers={**AUTH, "X-Line-Retry-Key": "seven"},
        body=_body({"to": USER, "messages": [{"type": "text", "text": "x"}]}),
    )
    anonymous = check_request("GET", "/v2/bot/info")
    unknown = check_request("DELETE", "/v2/bot/info", headers=AUTH)

    assert [v.message for v in retry_on_get] == [
        "header x-line-retry-key is not declared for this operation"
    ]
    assert any("X-Line-Retry-Key" in v.message for v in bad_key)
    assert any("Security" in v.message for v in anonymous)
    assert unknown[0].message == "no such operation in the LINE specs"


def test_responses_are_checked_and_undocumented_errors_use_error_response() -> None:
    good = check_response(
        "GET",
        "/v2/bot/followers/ids",
        200,
        headers=AUTH,
        response_headers={"Content-Type": "application/json"},
        response_body=_body({"userIds": [USER], "next": "abc"}),
    )
    extra = check_response(
        "GET",
        "/v2/bot/followers/ids",
        200,
        headers=AUTH,
        response_headers={"Content-Type": "application/json"},
        response_body=_body({"userIds": [USER], "total": 1}),
    )
    forbidden = check_response(
        "GET",
        "/v2/bot/followers/ids",
        403,
        headers=AUTH,
        response_headers={"Content-Type": "application/json"},
        response_body=_body({"message": "no"}),
    )
    misshapen = check_response(
        "GET",
        "/v2/bot/followers/ids",
        403,
        headers=AUTH,
        response_headers={"Content-Type": "application/json"},
        response_body=_body({"error": "no"}),
    )
    wrong_type = check_response(
        "GET",
        "/v2/bot/message/quota",
        200,
        headers=AUTH,
        response_headers={"Content-Type": "application/json"},
        response_body=_body({"type": "unlimited"}),
    )

    assert good.violations == [] and good.notes == []
    assert [v.message for v in extra.violations] == ["/total: property not declared by the spec"]
    assert forbidden.violations == [] and len(forbidden.notes) == 1
    assert misshapen.violations
    assert wrong_type.violations


async def test_the_recorder_sees_every_exchange(
    emulator: LineEmulator,
    shop: Account,
    http: aiohttp.ClientSession,
    conformance: ConformanceRecorder,
) -> None:
    api = LineApi(http, shop.access_token)
    await api.bot_info()
    await api.call(
        "POST",
        "/v2/bot/message/multicast",
        json={
            "to": [emulator.follower_ids(shop)[0]],
            "messages": [{"type": "text", "text": "x", "colour": "red"}],
        },
    )

    assert conformance.checked == 2
    assert [v.message for v in conformance.violations] == [
        "/messages/0/colour: property not declared by the spec"
    ]
