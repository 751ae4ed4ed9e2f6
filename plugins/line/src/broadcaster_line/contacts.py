"""Contact sync: the follower list, page by page, then profiles in parallel.

Only verified and premium LINE Official Accounts may read their follower list; LINE answers 403
to the others, which learn their contacts from webhooks alone. Pages hold up to 1,000 user ids;
LINE's `next` token resumes the list and becomes the page cursor. Profiles are fetched with a
bounded number of requests in flight, paced by a token bucket under LINE's 2,000 req/s limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from broadcaster.channels import (
    ChannelContact,
    ChannelError,
    ContactPage,
    ContactsNotListable,
    FollowerState,
)
from broadcaster_line.client import LineClient, LineReply, failure
from broadcaster_line.pacing import TokenBucket
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

FOLLOWERS_PAGE = 1_000
PROFILE_CONCURRENCY = 50
NOT_LISTABLE = (
    "LINE lets only verified or premium LINE Official Accounts read their follower list, and "
    "this account is neither. Its contacts are added as people follow it, message it or tap a "
    "button (webhooks); to import every existing follower, get the account verified by LINE "
    "and sync again."
)


def _unexpected(reply: LineReply, what: str) -> ChannelError:
    return failure(reply, what)


def _user_ids(body: Any) -> list[str]:
    ids = body.get("userIds") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        raise ChannelError("LINE's follower list answer had no userIds")
    return [i for i in ids if isinstance(i, str)]


class ContactSync:
    """Follower pages and profiles for one channel, sharing one pacing bucket."""

    def __init__(
        self,
        client: LineClient,
        bucket: TokenBucket,
        retry: RetryPolicy = DEFAULT_RETRY,
        concurrency: int = PROFILE_CONCURRENCY,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._retry = retry
        self._concurrency = max(1, concurrency)

    async def _followers(self, start: str | None) -> LineReply:
        async def call() -> LineReply:
            await self._bucket.acquire()
            return await self._client.followers_ids(limit=FOLLOWERS_PAGE, start=start)

        return await call_with_retries(call, "reading the follower list", self._retry)

    async def pages(self, cursor: str | None) -> AsyncIterator[ContactPage]:
        """Follower pages from `cursor` (LINE's `next` token; None: the start) to the end."""
        start = cursor
        while True:
            reply = await self._followers(start)
            if reply.status == 403:
                raise ContactsNotListable(NOT_LISTABLE)
            if reply.status == 400 and start is not None and start == cursor:
                # LINE's continuation tokens expire after 24 hours: a sync resumed later than
                # that starts over (the core merges, so re-listing is harmless).
                log.info(
                    "LINE refused the saved follower cursor (%s); listing from the start",
                    reply.error.message,
                )
                start = cursor = None
                continue
            if not reply.ok:
                raise _unexpected(reply, "reading the follower list")
            ids = _user_ids(reply.body)
            following = FollowerState.FOLLOWING
            nxt = reply.body.get("next")
            start = nxt if isinstance(nxt, str) and nxt else None
            yield ContactPage([ChannelContact(i, follower_state=following) for i in ids], start)
            if start is None:
                return

    async def _profile(self, user_id: str) -> ChannelContact | None:
        async def call() -> LineReply:
            await self._bucket.acquire()
            return await self._client.profile(user_id)

        reply = await call_with_retries(call, "reading profiles", self._retry)
        if not reply.ok:
            # 404: unknown, never followed, or blocked the account; 400: not a user id.
            if reply.status not in (400, 404):
                raise _unexpected(reply, "reading a profile")
            return None
        body = reply.body if isinstance(reply.body, dict) else {}
        name, picture = body.get("displayName"), body.get("pictureUrl")
        return ChannelContact(
            external_id=user_id,
            display_name=name if isinstance(name, str) else "",
            picture_uri=picture if isinstance(picture, str) else "",
            follower_state=FollowerState.FOLLOWING,
        )

    async def profiles(self, user_ids: Sequence[str]) -> list[ChannelContact]:
        """Profiles of `user_ids` in their order; those LINE does not know are left out."""
        found: list[ChannelContact | None] = [None] * len(user_ids)
        indexes = iter(range(len(user_ids)))

        async def worker() -> None:
            for i in indexes:  # one shared iterator: each index goes to exactly one worker
                found[i] = await self._profile(user_ids[i])

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                for _ in range(min(self._concurrency, len(user_ids))):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            channel_errors = failed.subgroup(ChannelError)
            if channel_errors is None:
                raise
            raise _first(channel_errors) from None
        return [c for c in found if c is not None]


def _first(group: BaseExceptionGroup[ChannelError]) -> ChannelError:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
