"""LINE's response shapes: JSON bodies, the `x-line-request-id` header on every answer, and the
error body `{"message": ..., "details": [{"message": ..., "property": ...}]}` with LINE's own
messages (https://developers.line.biz/en/reference/messaging-api/#error-messages)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from .validation import ErrorDetail

REQUEST_ID_HEADER = "x-line-request-id"
ACCEPTED_REQUEST_ID_HEADER = "x-line-accepted-request-id"

AUTH_REQUIRED = (
    "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
)
AUTH_FAILED = (
    "Authentication failed. Confirm that the access token in the authorization header is valid."
)
NOT_AVAILABLE = "Access to this API is not available for your account"
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
FAILED_TO_SEND = "Failed to send messages"
NOT_FOUND = "Not found"
INVALID_START = "Invalid start param"
TOO_LARGE = "Request Entity Too Large"
SERVER_ERRORS: Mapping[int, str] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def ok(body: Mapping[str, Any], request_id: str, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, headers={REQUEST_ID_HEADER: request_id}, dumps=dumps
    )


def error(
    status: int,
    message: str,
    request_id: str,
    details: Iterable[ErrorDetail] = (),
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"message": message}
    listed = [d.to_json() for d in details]
    if listed:  # LINE leaves `details` out rather than sending an empty array
        body["details"] = listed
    if extra:
        body.update(extra)
    all_headers = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    return web.json_response(body, status=status, headers=all_headers, dumps=dumps)


def bad_request(request_id: str, details: list[ErrorDetail]) -> web.Response:
    return error(400, f"The request body has {len(details)} error(s)", request_id, details)


def invalid_property(
    request_id: str, prop: str, details: Iterable[ErrorDetail] = ()
) -> web.Response:
    message = f"The property, {prop}, in the request body is invalid (line: -, column: -)"
    return error(400, message, request_id, details)


def server_error(status: int, request_id: str) -> web.Response:
    return error(status, SERVER_ERRORS.get(status, "Server Error"), request_id)
