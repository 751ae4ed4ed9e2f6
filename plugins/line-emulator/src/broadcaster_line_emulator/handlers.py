"""The Messaging API endpoints, one function each. Handlers are synchronous: between reading
state and recording a delivery nothing else runs, so quota, retry keys and deliveries stay
consistent under concurrent requests. The webhook test alone waits (on its POST to the webhook
URL), after reading what it needs and before changing nothing."""

from __future__ import annotations

import base64
import binascii
import json
import re
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from . import aggregation as agg
from . import responses as r
from .ids import is_user_id
from .runtime import Runtime
from .state import Account
from .validation import (
    ErrorDetail,
    validate_broadcast,
    validate_messages,
    validate_multicast,
    validate_push,
)
from .webhooks import SIGNATURE_HEADER, callback_body, sign

FOLLOWERS_DEFAULT_LIMIT = 300
FOLLOWERS_MAX_LIMIT = 1_000
CONTINUATION_TTL = 24 * 60 * 60.0
_QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video"})
_GROUP_OR_ROOM = re.compile(r"[CR][0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated, rate-checked request on its way to a handler."""

    runtime: Runtime
    account: Account
    request: web.Request
    body: bytes
    request_id: str
    retry_key: str | None
    endpoint: str


def _json_object(call: Call) -> dict[str, Any] | web.Response:
    content_type = call.request.content_type
    if content_type != "application/json":
        return r.error(400, f"The content type, {content_type}, is not supported", call.request_id)
    try:
        value = json.loads(call.body)
    except json.JSONDecodeError as exc:
        where = f"(line: {exc.lineno}, column: {exc.colno})"
        return r.error(
            400, f"The request body could not be parsed as JSON {where}", call.request_id
        )
    except UnicodeDecodeError:
        return r.error(
            400,
            "The request body could not be parsed as JSON (line: 1, column: 1)",
            call.request_id,
        )
    if not isinstance(value, dict):
        return r.error(
            400,
            "The request body could not be parsed as JSON (line: 1, column: 1)",
            call.request_id,
        )
    return value


def _deliver(
    call: Call,
    body: Mapping[str, Any],
    recipients: array[int],
    undelivered: int,
    reply: Mapping[str, Any],
    sent_messages: tuple[Mapping[str, str], ...] | None = None,
) -> web.Response:
    """Charge the quota, record the delivery (and its unit), remember the retry key, answer
    200. A unit name new this month past the channel's allowance is refused with 400."""
    account, stats = call.account, call.runtime.stats
    now = call.runtime.clock.time()
    units = body.get("customAggregationUnits") or []
    unit = units[0] if units else None
    if unit is not None and not account.units.admits(unit, now):
        detail = ErrorDetail(agg.UNIT_LIMIT_MESSAGE, "customAggregationUnits")
        return r.bad_request(call.request_id, [detail])
    if not account.quota.allows(len(recipients)):
        stats.quota_rejected[call.endpoint] += 1
        return r.error(429, r.MONTHLY_LIMIT, call.request_id)
    if unit is not None:
        account.units.record(unit, now)
    account.quota.usage += len(recipients)
    stats.undelivered[call.endpoint] += undelivered
    account.deliveries.record(
        endpoint=call.endpoint,
        request_id=call.request_id,
        retry_key=call.retry_key,
        messages=body["messages"],
        accepted_at=call.runtime.clock.time(),
        notification_disabled=bool(body.get("notificationDisabled", False)),
        recipients=recipients,
        unit=unit,
    )
    if call.retry_key is not None:
        account.retry_keys.remember(call.retry_key, call.request_id, sent_messages)
    return r.ok(reply, call.request_id)


def _checked(
    call: Call, validate: Callable[[Mapping[str, Any]], list[ErrorDetail]]
) -> dict[str, Any] | web.Response:
    """The request's JSON object if `validate` finds nothing wrong with it; else LINE's 400."""
    body = _json_object(call)
    if isinstance(body, web.Response):
        return body
    errors = validate(body)
    return r.bad_request(call.request_id, errors) if errors else body


def multicast(call: Call) -> web.Response:
    body = _json_object(call)
    if isinstance(body, web.Response):
        return body
    check = validate_multicast(body)
    if check.errors:
        if check.invalid_recipients and len(check.errors) == len(check.invalid_recipients):
            # LINE names the bad entry: "The property, to[1], in the request body is invalid"
            return r.invalid_property(
                call.request_id, f"to[{check.invalid_recipients[0]}]", check.errors
            )
        return r.bad_request(call.request_id, check.errors)
    # Blocked users, non-friends, duplicates: LINE answers 200 but neither sends nor counts
    # ("only messages that can actually be delivered are counted", LINE FAQ and pricing).
    recipients, undelivered = call.account.followers.deliverable(body["to"])
    return _deliver(call, body, recipients, undelivered, {})


def validate_multicast_messages(call: Call) -> web.Response:
    """`{"messages": [...]}` checked as a multicast's would be: 200 `{}`, or 400 naming each
    bad property; nothing is sent or counted."""
    body = _checked(call, validate_messages)
    if isinstance(body, web.Response):
        return body
    return r.ok({}, call.request_id)


def push(call: Call) -> web.Response:
    body = _checked(call, validate_push)
    if isinstance(body, web.Response):
        return body
    to = body["to"]
    followers = call.account.followers
    if not is_user_id(to):
        if _GROUP_OR_ROOM.fullmatch(to):  # the emulator has no group chats
            return r.error(400, r.FAILED_TO_SEND, call.request_id)
        return r.invalid_property(call.request_id, "to", [ErrorDetail("Invalid user ID", "to")])
    position = followers.position(to)
    if position is None:
        return r.error(400, r.FAILED_TO_SEND, call.request_id)  # LINE: user id doesn't exist
    ids = call.runtime.ids
    sent = tuple(
        {"id": ids.message_id(), "quoteToken": ids.quote_token()}
        if m.get("type") in _QUOTABLE
        else {"id": ids.message_id()}
        for m in body["messages"]
    )
    blocked = followers.is_blocked(position)
    recipients: array[int] = array("I", [] if blocked else [position])
    return _deliver(call, body, recipients, int(blocked), {"sentMessages": list(sent)}, sent)


def broadcast(call: Call) -> web.Response:
    body = _checked(call, validate_broadcast)
    if isinstance(body, web.Response):
        return body
    recipients: array[int] = array("I", call.account.followers.following_positions())
    return _deliver(call, body, recipients, 0, {})


def bot_info(call: Call) -> web.Response:
    return r.ok(call.account.bot_info(), call.request_id)


def quota(call: Call) -> web.Response:
    limit = call.account.quota.limit
    body: dict[str, Any] = (
        {"type": "none"} if limit is None else {"type": "limited", "value": limit}
    )
    return r.ok(body, call.request_id)


def quota_consumption(call: Call) -> web.Response:
    return r.ok({"totalUsage": call.account.quota.usage}, call.request_id)


def profile(call: Call) -> web.Response:
    user_id = call.request.match_info["userId"]
    if not is_user_id(user_id):
        return r.error(400, "The value for the 'userId' parameter is invalid", call.request_id)
    followers = call.account.followers
    if not followers.is_following(user_id):  # unknown, never followed, or blocked
        return r.error(404, r.NOT_FOUND, call.request_id)
    return r.ok(followers.profile(user_id).to_json(), call.request_id)


def _continuation(channel_id: str, position: int, issued: float) -> str:
    raw = f"{channel_id}:{position}:{int(issued)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_continuation(token: str, channel_id: str, now: float) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        channel, position, issued = raw.split(":")
        start, issued_at = int(position), int(issued)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if channel != channel_id or start < 0 or now - issued_at > CONTINUATION_TTL:
        return None  # "The continuation token expires in 24 hours"
    return start


def followers(call: Call) -> web.Response:
    account = call.account
    if not account.tier.can_list_followers:
        return r.error(403, r.NOT_AVAILABLE, call.request_id)
    paged = _page(call, FOLLOWERS_DEFAULT_LIMIT, FOLLOWERS_MAX_LIMIT)
    if isinstance(paged, web.Response):
        return paged
    start, limit, now = paged
    user_ids, next_position = account.followers.page(start, limit)
    body: dict[str, Any] = {"userIds": user_ids}
    if next_position is not None:
        body["next"] = _continuation(account.channel_id, next_position, now)
    return r.ok(body, call.request_id)


# -- webhook settings ------------------------------------------------------------------------

WEBHOOK_URL_MAX = 500
WEBHOOK_TEST_TIMEOUT = 10.0  # how long the test waits for the webhook URL to answer
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _webhook_url(value: Any, prop: str) -> str | ErrorDetail:
    """A webhook URL LINE accepts: a string of at most 500 characters, an absolute HTTPS URL.
    The emulator also takes plain HTTP to a loopback host, so local tests can reach a server
    without TLS (LINE itself takes HTTPS only)."""
    if not isinstance(value, str):
        return ErrorDetail("Must be a string", prop)
    if len(value) > WEBHOOK_URL_MAX:
        return ErrorDetail(f"Length must be between 0 and {WEBHOOK_URL_MAX}", prop)
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return ErrorDetail("Invalid webhook endpoint URL", prop)
    https = parts.scheme == "https"
    local_http = parts.scheme == "http" and host in _LOOPBACK
    if not host or not (https or local_http):
        return ErrorDetail("Invalid webhook endpoint URL: use an HTTPS URL", prop)
    return value


def get_webhook_endpoint(call: Call) -> web.Response:
    endpoint = call.account.webhook_endpoint
    if endpoint is None:  # no webhook URL was ever set for the channel
        return r.error(404, r.NOT_FOUND, call.request_id)
    return r.ok({"endpoint": endpoint, "active": call.account.webhook_active}, call.request_id)


def set_webhook_endpoint(call: Call) -> web.Response:
    body = _json_object(call)
    if isinstance(body, web.Response):
        return body
    if "endpoint" not in body:
        return r.bad_request(call.request_id, [ErrorDetail("Must not be null", "endpoint")])
    url = _webhook_url(body["endpoint"], "endpoint")
    if isinstance(url, ErrorDetail):
        return r.bad_request(call.request_id, [url])
    call.account.webhook_endpoint = url
    return r.ok({}, call.request_id)


async def test_webhook_endpoint(call: Call) -> web.Response:
    """POST a signed webhook with no events to the URL given, or to the channel's, as LINE's
    "Verify" does, and report how it answered."""
    body: dict[str, Any] = {}
    if call.body.strip():
        parsed = _json_object(call)
        if isinstance(parsed, web.Response):
            return parsed
        body = parsed
    given = body.get("endpoint")
    if given is None:
        if call.account.webhook_endpoint is None:
            return r.error(400, "The webhook endpoint URL is not set", call.request_id)
        url: str | ErrorDetail = call.account.webhook_endpoint
    else:
        url = _webhook_url(given, "endpoint")
    if isinstance(url, ErrorDetail):
        return r.bad_request(call.request_id, [url])
    account = call.account
    payload = callback_body(account.bot_user_id, [])
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "LineBotWebhook/2.0",
        SIGNATURE_HEADER: sign(account.channel_secret, payload),
    }
    sent_at = call.runtime.clock.time()
    status, reason, detail = 0, "", ""
    try:
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TEST_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=payload, headers=headers, allow_redirects=False) as resp,
        ):
            await resp.read()
            status, reason, detail = resp.status, resp.reason or "", str(resp.status)
    except TimeoutError:
        status, reason, detail = -1, "REQUEST_TIMEOUT", "The webhook URL did not answer in time"
    except aiohttp.ClientError as exc:
        status, reason, detail = 0, "COULD_NOT_CONNECT", str(exc) or type(exc).__name__
    stamp = datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="milliseconds")
    result = {
        "success": status == 200,
        "timestamp": stamp.replace("+00:00", "Z"),
        "statusCode": status,
        "reason": reason,
        "detail": detail,
    }
    return r.ok(result, call.request_id)


# -- statistics per unit ---------------------------------------------------------------------


def aggregation_info(call: Call) -> web.Response:
    used = call.account.units.used(call.runtime.clock.time())
    return r.ok({"numOfCustomAggregationUnits": len(used)}, call.request_id)


def _page(call: Call, default: int, maximum: int) -> tuple[int, int, float] | web.Response:
    """A paged list's `start` (from its continuation token) and `limit`, and the time they were
    read at; or LINE's 400 for a bad one."""
    query = call.request.query
    limit = default
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= maximum:
            detail = ErrorDetail(f"Must be between 1 and {maximum}", "limit")
            return r.error(400, "Invalid limit param", call.request_id, [detail])
    now = call.runtime.clock.time()
    start = 0
    if "start" in query:
        parsed = _parse_continuation(query["start"], call.account.channel_id, now)
        if parsed is None:
            return r.error(400, r.INVALID_START, call.request_id)
        start = parsed
    return start, limit, now


def aggregation_list(call: Call) -> web.Response:
    """This month's unit names, `limit` at a time, continued with `start` = the last `next`."""
    account = call.account
    paged = _page(call, agg.LIST_DEFAULT_LIMIT, agg.LIST_MAX_LIMIT)
    if isinstance(paged, web.Response):
        return paged
    start, limit, now = paged
    used = account.units.used(now)
    body: dict[str, Any] = {"customAggregationUnits": used[start : start + limit]}
    if start + limit < len(used):
        body["next"] = _continuation(account.channel_id, start + limit, now)
    return r.ok(body, call.request_id)


def _insight_error(call: Call) -> web.Response:
    return web.json_response(
        dict(agg.INSIGHT_ERROR_BODY),
        status=400,
        headers={r.REQUEST_ID_HEADER: call.request_id},
        dumps=r.dumps,
    )


def statistics_per_unit(call: Call) -> web.Response:
    """The unit's figures for sends made from `from` to `to` (JST dates, at most 30 days
    apart); 400 with LINE's empty error body for a missing or bad unit or period."""
    query = call.request.query
    unit = query.get("customAggregationUnit", "")
    start = agg.parse_day(query.get("from", ""))
    end = agg.parse_day(query.get("to", ""))
    if agg.UNIT_NAME.fullmatch(unit) is None or start is None or end is None:
        return _insight_error(call)
    if end < start or (end - start).days > agg.MAX_PERIOD_DAYS:
        return _insight_error(call)
    account = call.account
    sends = agg.sends_in_period(account.deliveries.sends, unit, start, end)
    body = agg.statistics(sends, account.engagement, call.runtime.clock.time())
    return r.ok(body, call.request_id)
