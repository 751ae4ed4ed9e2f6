"""A thin Messaging API client for the emulator's own tests (the plugin has the real one)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy


def text(value: str = "Hello from the shop") -> list[dict[str, Any]]:
    return [{"type": "text", "text": value}]


def new_retry_key() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-line-request-id")

    @property
    def message(self) -> str:
        return str(self.body["message"])

    @property
    def detail_properties(self) -> list[str]:
        return [d["property"] for d in self.body.get("details", [])]


class LineApi:
    """Calls one channel's endpoints with its bearer token."""

    def __init__(self, session: aiohttp.ClientSession, token: str | None) -> None:
        self.session = session
        self.token = token

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(
            method, path, json=json, data=data, params=params, headers=all_headers
        ) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return Reply(resp.status, resp.headers, body)

    def _retry(self, retry_key: str | None) -> dict[str, str]:
        return {"X-Line-Retry-Key": retry_key} if retry_key else {}

    async def multicast(
        self,
        to: list[str],
        messages: list[dict[str, Any]] | None = None,
        *,
        retry_key: str | None = None,
        **extra: Any,
    ) -> Reply:
        body = {"to": to, "messages": messages if messages is not None else text(), **extra}
        return await self.call(
            "POST", "/v2/bot/message/multicast", json=body, headers=self._retry(retry_key)
        )

    async def push(
        self, to: str, messages: list[dict[str, Any]] | None = None, *, retry_key: str | None = None
    ) -> Reply:
        body = {"to": to, "messages": messages if messages is not None else text()}
        return await self.call(
            "POST", "/v2/bot/message/push", json=body, headers=self._retry(retry_key)
        )

    async def broadcast(
        self, messages: list[dict[str, Any]] | None = None, *, retry_key: str | None = None
    ) -> Reply:
        body = {"messages": messages if messages is not None else text()}
        return await self.call(
            "POST", "/v2/bot/message/broadcast", json=body, headers=self._retry(retry_key)
        )

    async def followers(self, *, limit: int | str | None = None, start: str | None = None) -> Reply:
        params = {}
        if limit is not None:
            params["limit"] = str(limit)
        if start is not None:
            params["start"] = start
        return await self.call("GET", "/v2/bot/followers/ids", params=params)

    async def all_followers(self, limit: int = 1000) -> list[str]:
        ids: list[str] = []
        start: str | None = None
        while True:
            reply = await self.followers(limit=limit, start=start)
            assert reply.status == 200, reply.body
            ids.extend(reply.body["userIds"])
            start = reply.body.get("next")
            if start is None:
                return ids

    async def profile(self, user_id: str) -> Reply:
        return await self.call("GET", f"/v2/bot/profile/{user_id}")

    async def bot_info(self) -> Reply:
        return await self.call("GET", "/v2/bot/info")

    async def quota(self) -> Reply:
        return await self.call("GET", "/v2/bot/message/quota")

    async def consumption(self) -> Reply:
        return await self.call("GET", "/v2/bot/message/quota/consumption")
