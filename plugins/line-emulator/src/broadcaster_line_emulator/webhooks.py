"""Webhook events as the LINE Platform sends them (webhook.yml): follow, unfollow, text message
and postback events, batched into `{"destination", "events"}` bodies and signed with
`x-line-signature` = base64(HMAC-SHA256(channel secret, raw body))."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from .clock import Clock
from .ids import IdFactory

Event = dict[str, Any]
SIGNATURE_HEADER = "x-line-signature"


def sign(channel_secret: str, body: bytes) -> str:
    digest = hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(channel_secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(channel_secret, body), signature)


def callback_body(destination: str, events: Sequence[Mapping[str, Any]]) -> bytes:
    return json.dumps(
        {"destination": destination, "events": list(events)},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


class EventFactory:
    """Builds event objects with fresh ids, reply tokens and the emulator's clock."""

    def __init__(self, clock: Clock, ids: IdFactory) -> None:
        self._clock = clock
        self._ids = ids

    def _base(
        self, kind: str, user_id: str, timestamp_ms: int | None, redelivery: bool, mode: str
    ) -> Event:
        ts = timestamp_ms if timestamp_ms is not None else int(self._clock.time() * 1000)
        return {
            "type": kind,
            "mode": mode,
            "timestamp": ts,
            "source": {"type": "user", "userId": user_id},
            "webhookEventId": self._ids.ulid(ts),
            "deliveryContext": {"isRedelivery": redelivery},
        }

    def follow(
        self,
        user_id: str,
        *,
        is_unblocked: bool = False,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
        mode: str = "active",
    ) -> Event:
        event = self._base("follow", user_id, timestamp_ms, redelivery, mode)
        event["replyToken"] = self._ids.reply_token()
        event["follow"] = {"isUnblocked": is_unblocked}
        return event

    def unfollow(
        self,
        user_id: str,
        *,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
        mode: str = "active",
    ) -> Event:
        # An unfollow event cannot be replied to: it carries no reply token.
        return self._base("unfollow", user_id, timestamp_ms, redelivery, mode)

    def text_message(
        self,
        user_id: str,
        text: str,
        *,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
        mode: str = "active",
    ) -> Event:
        event = self._base("message", user_id, timestamp_ms, redelivery, mode)
        event["replyToken"] = self._ids.reply_token()
        event["message"] = {
            "type": "text",
            "id": self._ids.message_id(),
            "quoteToken": self._ids.quote_token(),
            "text": text,
        }
        return event

    def postback(
        self,
        user_id: str,
        data: str,
        *,
        params: Mapping[str, str] | None = None,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
        mode: str = "active",
    ) -> Event:
        event = self._base("postback", user_id, timestamp_ms, redelivery, mode)
        event["replyToken"] = self._ids.reply_token()
        event["postback"] = {"data": data, **({"params": dict(params)} if params else {})}
        return event

    @staticmethod
    def redelivered(event: Mapping[str, Any]) -> Event:
        """The same event (same webhookEventId) as LINE redelivers it."""
        copy = json.loads(json.dumps(event))
        copy["deliveryContext"] = {"isRedelivery": True}
        return dict(copy)


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """One POST to a webhook URL and how the receiver answered."""

    status: int
    response_body: str
    request_body: bytes
    signature: str
    event_count: int
    elapsed: float


class WebhookSender:
    """Signs and posts callback bodies for one channel."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        channel_secret: str,
        destination: str,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._secret = channel_secret
        self._destination = destination
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def post(
        self,
        url: str,
        events: Sequence[Mapping[str, Any]],
        *,
        bad_signature: bool = False,
        omit_signature: bool = False,
    ) -> WebhookResult:
        body = callback_body(self._destination, events)
        signature = sign(self._secret, body)
        if bad_signature:
            signature = sign(self._secret + "-wrong", body)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "LineBotWebhook/2.0",
        }
        if not omit_signature:
            headers[SIGNATURE_HEADER] = signature
        started = time.perf_counter()
        async with self._session.post(
            url, data=body, headers=headers, timeout=self._timeout
        ) as resp:
            text = await resp.text()
        return WebhookResult(
            resp.status, text, body, signature, len(events), time.perf_counter() - started
        )

    async def post_batches(
        self,
        url: str,
        events: Sequence[Mapping[str, Any]],
        batch_size: int,
        *,
        concurrency: int = 1,
    ) -> list[WebhookResult]:
        """Several events per request, as LINE does. With `concurrency` 1 the requests go one
        after another, in order; more lets them overlap (and arrive in any order), as LINE's
        do under load. Results are in batch order either way."""
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
        if concurrency == 1:
            return [await self.post(url, batch) for batch in batches]
        gate = asyncio.Semaphore(concurrency)

        async def post(batch: Sequence[Mapping[str, Any]]) -> WebhookResult:
            async with gate:
                return await self.post(url, batch)

        return list(await asyncio.gather(*(post(batch) for batch in batches)))

    async def connectivity_check(self, url: str) -> WebhookResult:
        """LINE's "Verify" request: a signed body with an empty `events` array."""
        return await self.post(url, [])
