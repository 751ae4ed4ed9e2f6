"""A thin async client for the few LINE Messaging API endpoints the channel uses.

It borrows the process's shared `aiohttp.ClientSession` (never opens or closes one) and, for
multicasts (the hot path), the core's `Poster` when it lends one; adds the bearer token, and
turns every answer into a `LineReply`: status, the parsed JSON body, LINE's request ids and
`Retry-After`. Callers decide what an expected status means; every answer they did not expect
becomes a channel error through one table, `FAILURES` (`failure`), so no LINE answer reaches
the core as anything but CredentialsInvalid or ChannelUnavailable. Network failures
(`aiohttp.ClientError`, `TimeoutError`, `OSError`) propagate to the callers (retry.py maps
them).

A token that could not travel in a header (a line break, any control character) is refused
when the client is made, so it never reaches aiohttp, nor LINE.

Nothing here logs: the token and message bodies must never reach a log line.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from broadcaster.channels import (
    Answer,
    ChannelError,
    ChannelUnavailable,
    CredentialsInvalid,
    Poster,
    Target,
)

DEFAULT_API_BASE = "https://api.line.me"
REQUEST_ID = "x-line-request-id"
ACCEPTED_REQUEST_ID = "x-line-accepted-request-id"
RETRY_KEY = "X-Line-Retry-Key"
RETRY_KEY_BYTES = RETRY_KEY.encode("ascii")
MULTICAST = "v2/bot/message/multicast"


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class LineError:
    """LINE's error body: `{"message": ..., "details": [{"message", "property"}]}`."""

    message: str = ""
    details: tuple[tuple[str, str], ...] = ()  # (property, message) pairs

    @classmethod
    def from_body(cls, body: Any) -> LineError:
        if not isinstance(body, dict):
            return cls()
        message = body.get("message")
        details: list[tuple[str, str]] = []
        raw = body.get("details")
        if isinstance(raw, list):
            for item in raw:
                if isinstance(item, dict):
                    prop, text = item.get("property"), item.get("message")
                    details.append((_str(prop), _str(text)))
        return cls(_str(message), tuple(details))

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(prop for prop, _ in self.details if prop)

    def describe(self) -> str:
        """One line for operators: LINE's message and each detail (never request bodies)."""
        parts = [self.message or "no message"]
        parts.extend(f"{prop or '?'}: {text or '?'}" for prop, text in self.details)
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class LineReply:
    """One answer of the Messaging API."""

    status: int
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    request_id: str = ""
    accepted_request_id: str = ""
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> LineError:
        return LineError.from_body(self.body)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# What an answer nobody expected means, by status; any other status is CHANNEL_UNAVAILABLE.
# 401: the token was refused. 403: the token is valid but the channel may not use the endpoint
# (a channel without the Messaging API, or a suspended account): the merchant must fix the
# channel in the console, so it is a credentials problem too.
FAILURES: dict[int, tuple[type[ChannelError], str]] = {
    401: (
        CredentialsInvalid,
        "LINE refused the channel access token. Issue a new long-lived channel access token in "
        "the LINE Developers Console (Messaging API tab) and reconnect the channel.",
    ),
    403: (
        CredentialsInvalid,
        "LINE does not allow this channel to use the Messaging API here. Check the channel in "
        "the LINE Developers Console (is it a Messaging API channel, and is the account active?)",
    ),
}


def failure(reply: LineReply, what: str) -> ChannelError:
    """The channel error for an answer the caller did not expect while `what`."""
    kind, advice = FAILURES.get(reply.status, (ChannelUnavailable, ""))
    message = f"LINE answered {reply.status} while {what}: {reply.error.describe()}"
    return kind(f"{advice} ({message})" if advice else message)


def is_header_safe(value: str) -> bool:
    """Printable ASCII only: what an HTTP header value may carry."""
    return value.isascii() and value.isprintable()


class LineClient:
    """Calls one channel's endpoints with its channel access token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        access_token: str,
        base_url: str = DEFAULT_API_BASE,
        *,
        poster: Poster | None = None,
    ) -> None:
        """`poster`: the process's, for multicasts (the hot path); without it, they go through
        `session` like every other call."""
        self._session = session
        self._poster = poster
        self._base = URL(base_url.rstrip("/") or DEFAULT_API_BASE)
        self.set_token(access_token)
        self._bot_info = self._base / "v2/bot/info"
        self._followers = self._base / "v2/bot/followers/ids"
        self._quota = self._base / "v2/bot/message/quota"
        self._consumption = self._base / "v2/bot/message/quota/consumption"
        self._multicast = self._base / MULTICAST
        self._push = self._base / "v2/bot/message/push"
        self._webhook_endpoint = self._base / "v2/bot/channel/webhook/endpoint"
        self._webhook_test = self._base / "v2/bot/channel/webhook/test"
        self._validate_multicast = self._base / "v2/bot/message/validate/multicast"
        self._aggregation_info = self._base / "v2/bot/message/aggregation/info"
        self._aggregation_list = self._base / "v2/bot/message/aggregation/list"
        self._unit_statistics = self._base / "v2/bot/insight/message/event/aggregation"

    def __repr__(self) -> str:  # never show the token
        return f"LineClient({str(self._base)!r})"

    @property
    def token(self) -> str:
        """The channel access token the next call sends."""
        return self._token

    def set_token(self, access_token: str) -> None:
        """Use another channel access token from now on (an issued one, renewed)."""
        if not is_header_safe(access_token):
            raise CredentialsInvalid(
                "the channel access token holds characters a LINE token never has "
                "(line breaks or other control characters)"
            )
        self._token = access_token
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._json_auth = {**self._auth, "Content-Type": "application/json"}
        self._multicast_target = Target.of(str(self._base / MULTICAST), self._json_auth)

    async def post_form(self, path: str, form: dict[str, str]) -> LineReply:
        """POST a form to an endpoint that takes no bearer token (channel access tokens)."""
        async with self._session.post(self._base / path, data=form) as resp:
            return await _reply(resp)

    async def get_query(self, path: str, query: dict[str, str]) -> LineReply:
        async with self._session.get((self._base / path).with_query(query)) as resp:
            return await _reply(resp)

    async def bot_info(self) -> LineReply:
        return await self._get(self._bot_info)

    async def followers_ids(self, *, limit: int, start: str | None = None) -> LineReply:
        query = {"limit": str(limit)}
        if start is not None:
            query["start"] = start
        return await self._get(self._followers.with_query(query))

    async def profile(self, user_id: str) -> LineReply:
        path = f"{self._base.path.rstrip('/')}/v2/bot/profile/{quote(user_id, safe='')}"
        return await self._get(self._base.with_path(path, encoded=True))

    async def quota(self) -> LineReply:
        return await self._get(self._quota)

    async def quota_consumption(self) -> LineReply:
        return await self._get(self._consumption)

    async def multicast(self, body: bytes, retry_key: str) -> LineReply:
        """POST an already serialised multicast body; `retry_key` is a UUID."""
        if self._poster is not None:
            if not is_header_safe(retry_key):
                raise ValueError("a retry key is a UUID")
            line = b"%s: %s\r\n" % (RETRY_KEY_BYTES, retry_key.encode("ascii"))
            return _answered(await self._poster.post(self._multicast_target, line, body))
        headers = {**self._json_auth, RETRY_KEY: retry_key}
        async with self._session.post(self._multicast, data=body, headers=headers) as resp:
            return await _reply(resp)

    async def push(self, body: bytes, retry_key: str) -> LineReply:
        """POST an already serialised push body (one recipient); `retry_key` is a UUID."""
        headers = {**self._json_auth, RETRY_KEY: retry_key}
        async with self._session.post(self._push, data=body, headers=headers) as resp:
            return await _reply(resp)

    async def set_webhook_endpoint(self, endpoint: str) -> LineReply:
        body = json.dumps({"endpoint": endpoint}).encode()
        async with self._session.put(
            self._webhook_endpoint, data=body, headers=self._json_auth
        ) as resp:
            return await _reply(resp)

    async def test_webhook_endpoint(self, endpoint: str) -> LineReply:
        body = json.dumps({"endpoint": endpoint}).encode()
        async with self._session.post(
            self._webhook_test, data=body, headers=self._json_auth
        ) as resp:
            return await _reply(resp)

    async def validate_multicast(self, body: bytes) -> LineReply:
        """POST `{"messages": [...]}` for LINE to check as a multicast's; nothing is sent."""
        async with self._session.post(
            self._validate_multicast, data=body, headers=self._json_auth
        ) as resp:
            return await _reply(resp)

    async def aggregation_info(self) -> LineReply:
        """How many statistics unit names the channel used this month."""
        return await self._get(self._aggregation_info)

    async def aggregation_list(self, *, limit: int, start: str | None = None) -> LineReply:
        """This month's unit names, `limit` at a time; `start` continues a list."""
        query = {"limit": str(limit)}
        if start is not None:
            query["start"] = start
        return await self._get(self._aggregation_list.with_query(query))

    async def statistics_per_unit(self, unit: str, start: str, end: str) -> LineReply:
        """The figures of what was sent under `unit` from `start` to `end` (JST yyyyMMdd)."""
        query = {"customAggregationUnit": unit, "from": start, "to": end}
        return await self._get(self._unit_statistics.with_query(query))

    async def _get(self, url: URL) -> LineReply:
        async with self._session.get(url, headers=self._auth) as resp:
            return await _reply(resp)


def _line_reply(
    status: int, content_type: str, raw: bytes, header: Callable[[str], str | None]
) -> LineReply:
    """An answer as a `LineReply`; `header(lower-case name)` reads one of its headers."""
    body: Any = None
    if raw and "json" in content_type:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    return LineReply(
        status=status,
        body=body,
        request_id=header(REQUEST_ID) or "",
        accepted_request_id=header(ACCEPTED_REQUEST_ID) or "",
        retry_after=parse_retry_after(header("retry-after")),
    )


def _answered(answer: Answer) -> LineReply:
    """An answer to a `Poster`'s POST (its header names are in lower case)."""
    content_type = answer.headers.get("content-type", "")
    return _line_reply(answer.status, content_type, answer.body, answer.headers.get)


async def _reply(resp: aiohttp.ClientResponse) -> LineReply:
    raw = await resp.read()  # read it all so the connection goes back to the pool
    return _line_reply(resp.status, resp.content_type, raw, resp.headers.get)
