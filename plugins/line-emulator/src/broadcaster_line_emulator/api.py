"""The request pipeline every Messaging API call goes through, and the route table.

Channel access tokens (the OAuth endpoints) are served by tokens.py; a bearer token is the
account's long-lived one or one issued there and still valid.

Order: injected latency and pre-processing faults; bearer authentication (401); the channel's
token bucket for the endpoint (429); `X-Line-Retry-Key` checks (400, or 409 with
`x-line-accepted-request-id` for a key already accepted); the endpoint handler; post-processing
faults; statistics; observers."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import handlers, tokens
from . import responses as r
from .faults import Decision, Phase
from .handlers import Call
from .ids import RETRY_KEY_PATTERN
from .runtime import Exchange, Runtime
from .state import Account
from .stats import RESET

MAX_BODY_BYTES = 2 * 1024 * 1024  # "Request exceeds the max size of 2MB" -> 413


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    method: str
    path: str
    # Synchronous, but for the few that wait on something outside (the webhook test's POST).
    handler: Callable[[Call], web.Response | Awaitable[web.Response]]
    retry_key: bool = False


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("push", "POST", "/v2/bot/message/push", handlers.push, retry_key=True),
    Endpoint("multicast", "POST", "/v2/bot/message/multicast", handlers.multicast, retry_key=True),
    Endpoint("broadcast", "POST", "/v2/bot/message/broadcast", handlers.broadcast, retry_key=True),
    Endpoint(
        "validate_multicast",
        "POST",
        "/v2/bot/message/validate/multicast",
        handlers.validate_multicast_messages,
    ),
    Endpoint("quota", "GET", "/v2/bot/message/quota", handlers.quota),
    Endpoint(
        "aggregation_info", "GET", "/v2/bot/message/aggregation/info", handlers.aggregation_info
    ),
    Endpoint(
        "aggregation_list", "GET", "/v2/bot/message/aggregation/list", handlers.aggregation_list
    ),
    Endpoint(
        "statistics_per_unit",
        "GET",
        "/v2/bot/insight/message/event/aggregation",
        handlers.statistics_per_unit,
    ),
    Endpoint(
        "quota_consumption", "GET", "/v2/bot/message/quota/consumption", handlers.quota_consumption
    ),
    Endpoint("profile", "GET", "/v2/bot/profile/{userId}", handlers.profile),
    Endpoint("followers", "GET", "/v2/bot/followers/ids", handlers.followers),
    Endpoint("bot_info", "GET", "/v2/bot/info", handlers.bot_info),
    Endpoint(
        "get_webhook_endpoint",
        "GET",
        "/v2/bot/channel/webhook/endpoint",
        handlers.get_webhook_endpoint,
    ),
    Endpoint(
        "set_webhook_endpoint",
        "PUT",
        "/v2/bot/channel/webhook/endpoint",
        handlers.set_webhook_endpoint,
    ),
    Endpoint(
        "test_webhook_endpoint",
        "POST",
        "/v2/bot/channel/webhook/test",
        handlers.test_webhook_endpoint,
    ),
)
ENDPOINT_NAMES = frozenset(e.name for e in ENDPOINTS)


def add_routes(app: web.Application, runtime: Runtime) -> None:
    for endpoint in ENDPOINTS:
        handler = functools.partial(_serve, runtime, endpoint)
        app.router.add_route(endpoint.method, endpoint.path, handler, name=f"line.{endpoint.name}")
    for oauth in tokens.OAUTH_ENDPOINTS:
        serve = functools.partial(tokens.serve, runtime, oauth)
        app.router.add_route(oauth.method, oauth.path, serve, name=f"line.{oauth.name}")


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _serve(runtime: Runtime, endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    token = _bearer(request)
    account = tokens.account_for_token(runtime, token) if token else None
    channel_id = account.channel_id if account else None
    runtime.stats.started(endpoint.name, channel_id)
    try:
        return await _answer(runtime, endpoint, request, body, token, account)
    finally:
        runtime.stats.ended(endpoint.name, channel_id)


async def _answer(
    runtime: Runtime,
    endpoint: Endpoint,
    request: web.Request,
    body: bytes,
    token: str | None,
    account: Account | None,
) -> web.StreamResponse:
    arrived = runtime.stats.now()
    request_id = runtime.ids.request_id()
    decision = runtime.decide(endpoint.name, account)
    if decision.delay > 0:
        await asyncio.sleep(decision.delay)

    reset = False
    accepted = False
    response: web.Response | None = None
    if decision.rate_limited:
        response = r.error(429, r.RATE_LIMITED, request_id)
    elif decision.error_status is not None and decision.error_phase is Phase.BEFORE:
        response = r.server_error(decision.error_status, request_id)
    elif decision.reset and decision.reset_phase is Phase.BEFORE:
        reset = True
    else:
        checked = _process(runtime, endpoint, request, body, request_id, token, account)
        if isinstance(checked, Call):
            handled = endpoint.handler(checked)
            response = await handled if inspect.isawaitable(handled) else handled
        else:
            response = checked
        accepted = 200 <= response.status < 300
        response, reset = _after(decision, response, request_id)

    for kind in decision.kinds:
        runtime.stats.faults[kind] += 1
    channel_id = account.channel_id if account else None
    status = RESET if reset or response is None else response.status
    runtime.stats.record(channel_id, endpoint.name, status, accepted=accepted, arrived=arrived)
    if runtime.observers:
        runtime.notify(_exchange(request, body, endpoint, channel_id, None if reset else response))
    if reset or response is None:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client: the transport is gone
    return response


def _after(
    decision: Decision, response: web.Response, request_id: str
) -> tuple[web.Response, bool]:
    if decision.error_status is not None and decision.error_phase is Phase.AFTER:
        return r.server_error(decision.error_status, request_id), False
    if decision.reset and decision.reset_phase is Phase.AFTER:
        return response, True
    return response, False


def _process(
    runtime: Runtime,
    endpoint: Endpoint,
    request: web.Request,
    body: bytes,
    request_id: str,
    token: str | None,
    account: Account | None,
) -> web.Response | Call:
    """The refusal of a request that does not get to its handler, or the call to hand it."""
    if token is None:
        return r.error(401, r.AUTH_REQUIRED, request_id)
    if account is None:
        return r.error(401, r.AUTH_FAILED, request_id)
    if not runtime.limiter.allow(account.channel_id, endpoint.name):
        runtime.stats.rate_limited[endpoint.name] += 1
        return r.error(429, r.RATE_LIMITED, request_id)
    if len(body) > MAX_BODY_BYTES:
        return r.error(413, r.TOO_LARGE, request_id)
    retry_key = request.headers.get("X-Line-Retry-Key")
    if retry_key is not None:
        if not endpoint.retry_key:
            # "If you include X-Line-Retry-Key ... with other APIs ... status code 400"
            return r.error(
                400, "The X-Line-Retry-Key header is not supported by this endpoint", request_id
            )
        if RETRY_KEY_PATTERN.fullmatch(retry_key) is None:
            return r.error(
                400, "The value for the 'X-Line-Retry-Key' header is invalid", request_id
            )
        retry_key = retry_key.lower()
        previous = account.retry_keys.lookup(retry_key)
        if previous is not None:
            extra = (
                {"sentMessages": list(previous.sent_messages)} if previous.sent_messages else None
            )
            headers = {r.ACCEPTED_REQUEST_ID_HEADER: previous.request_id}
            return r.error(409, r.RETRY_KEY_ACCEPTED, request_id, headers=headers, extra=extra)
    return Call(runtime, account, request, body, request_id, retry_key, endpoint.name)


def _exchange(
    request: web.Request,
    body: bytes,
    endpoint: Endpoint,
    channel_id: str | None,
    response: web.Response | None,
) -> Exchange:
    payload = response.body if response is not None else b""
    return Exchange(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=body,
        status=response.status if response is not None else None,
        response_headers=response.headers if response is not None else {},
        response_body=payload if isinstance(payload, bytes) else b"",
        endpoint=endpoint.name,
        channel_id=channel_id,
        request=request,
        response=response,
    )
