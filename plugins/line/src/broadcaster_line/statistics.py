"""Statistics per unit: a broadcast's sends carry one LINE aggregation unit, named from the
broadcast's id; its opens, clicks and plays are read back from LINE's insight endpoint.

LINE lets a channel use a limited number of unit names a month (`MONTHLY_UNIT_ALLOWANCE`, the
month in JST). `UnitAllowance` keeps, per channel instance, the month's count and, once it is
used up, the names used, so a send under a unit new this month goes out without it rather than
being refused. A figure LINE withholds (null: fewer than 20 people) stays None, never 0."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from broadcaster.channels import (
    BubbleStatistics,
    ChannelStatistics,
    ChannelUnavailable,
    UrlStatistics,
)
from broadcaster_line.client import LineClient, LineReply, failure
from broadcaster_line.retry import NETWORK_ERRORS

# LINE's month and aggregation dates are Japan Standard Time (UTC+9, no daylight saving).
JST = timezone(timedelta(hours=9))
# Different unit names a channel may use per month; the count resets on the 1st (JST).
MONTHLY_UNIT_ALLOWANCE = 1_000
# Unit names: 1-30 of a-z, A-Z, 0-9 and underscore, case-sensitive; one per send.
UNIT_NAME = re.compile(r"[a-zA-Z0-9_]{1,30}")
UNIT_MAX_LENGTH = 30
UNIT_PREFIX = "b_"
# Figures keep changing for 14 days (1,209,600 s) after a send, then are frozen.
STATISTICS_WINDOW = timedelta(days=14)
# "Get statistics per unit" answers 60 requests an hour per channel.
STATISTICS_REQUESTS_PER_HOUR = 60.0
# The aggregation period may end at most 30 days after it starts.
MAX_PERIOD_DAYS = 30
# Unit names per page of the month's list (LINE's maximum and default).
LIST_PAGE = 100
# How long the month's count (and list) is trusted before it is read again.
ALLOWANCE_TTL = 10 * 60.0
UNIT_PROPERTY = "customAggregationUnits"


def unit_name(broadcast_id: str) -> str:
    """`b_` and the id when it is a valid name as it is; otherwise `b_` and 28 hex digits of
    its BLAKE2b hash (112 bits: distinct ids do not meet in practice)."""
    candidate = UNIT_PREFIX + broadcast_id
    if UNIT_NAME.fullmatch(candidate):
        return candidate
    digest = hashlib.blake2b(broadcast_id.encode(), digest_size=14).hexdigest()
    return UNIT_PREFIX + digest


def jst_month(when: datetime) -> str:
    return when.astimezone(JST).strftime("%Y%m")


def month_end(when: datetime) -> datetime:
    """When the JST month of `when` ends (the next one's first instant)."""
    local = when.astimezone(JST)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def period(sent: datetime, now: datetime) -> tuple[str, str]:
    """`from` and `to` (JST `yyyyMMdd`): the send's day to today, at most 30 days on."""
    start: date = sent.astimezone(JST).date()
    end = min(start + timedelta(days=MAX_PERIOD_DAYS), now.astimezone(JST).date())
    end = max(end, start)
    return start.strftime("%Y%m%d"), end.strftime("%Y%m%d")


def is_unit_refusal(reply: LineReply) -> bool:
    """A 400 that names the unit (LINE refused it, say past the month's allowance)."""
    return reply.status == 400 and any(
        prop.startswith(UNIT_PROPERTY) for prop in reply.error.properties
    )


class UnitAllowance:
    """What one channel instance knows of the month's unit names: the count LINE reports and,
    once the allowance is used up, which names were used (a send under one of them may still
    carry it). Read again after `ALLOWANCE_TTL`, or when the JST month turns. Sends that ask
    while a read is on its way wait for that read: a channel starting a broadcast asks with
    every batch it has in flight at once, and each had read the count itself (twelve batches
    at once, twelve reads)."""

    def __init__(
        self,
        client: LineClient,
        allowance: int = MONTHLY_UNIT_ALLOWANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._allowance = allowance
        self._clock = clock
        self._month = ""
        self._month_ends = 0.0  # when `_month` ends, as the clock reads
        self._count = 0
        self._names: set[str] | None = None  # read only once the allowance is used up
        self._read_at: float | None = None
        self._reading: asyncio.Task[None] | None = None  # the read on its way, if any

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def admits(self, unit: str) -> bool:
        """Whether a send may carry `unit`. When LINE cannot say, True: a refusal is still
        caught (`is_unit_refusal`) and the batch sent again without it."""
        if self._clock() >= self._month_ends:  # once a month, not on every send
            now = self._now()
            month = jst_month(now)
            self._month_ends = month_end(now).timestamp()
            if month != self._month:
                self._month, self._count, self._names, self._read_at = month, 0, None, None
        if self._names is not None and unit in self._names:
            return True
        stale = self._read_at is None or self._clock() - self._read_at > ALLOWANCE_TTL
        try:
            if stale:
                await self._read_shared()
        except ChannelUnavailable:
            return True
        except NETWORK_ERRORS:
            return True
        if self._count < self._allowance:
            return True
        return self._names is not None and unit in self._names

    def used(self, unit: str) -> None:
        """A send under `unit` was accepted. Below the allowance the count is left to the next
        read: whether the name was new this month is LINE's to say."""
        if self._names is not None and unit not in self._names:
            self._names.add(unit)
            self._count += 1

    def used_up(self) -> None:
        """LINE refused a unit: whatever the count said, the month's allowance is spent."""
        self._count = max(self._count, self._allowance)
        self._read_at = None

    async def _read_shared(self) -> None:
        """`_read`, or the read already on its way: its outcome, failure included, is every
        waiter's. A waiter cancelled does not cancel the read for the others."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
            # Retrieved here, so that a read whose waiters were all cancelled logs nothing.
            self._reading.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._reading)

    async def _read(self) -> None:
        info = await self._client.aggregation_info()
        if not info.ok:
            raise failure(info, "reading the month's statistics units")
        count = info.body.get("numOfCustomAggregationUnits") if isinstance(info.body, dict) else 0
        self._count = count if isinstance(count, int) else 0
        self._names = await self._read_names() if self._count >= self._allowance else None
        self._read_at = self._clock()

    async def _read_names(self) -> set[str]:
        names: set[str] = set()
        start: str | None = None
        while True:
            reply = await self._client.aggregation_list(limit=LIST_PAGE, start=start)
            if not reply.ok:
                raise failure(reply, "listing the month's statistics units")
            body = reply.body if isinstance(reply.body, dict) else {}
            listed = body.get(UNIT_PROPERTY)
            if isinstance(listed, list):
                names.update(n for n in listed if isinstance(n, str))
            following = body.get("next")
            if not isinstance(following, str) or not following:
                return names
            start = following


def _count(item: Any, name: str) -> int | None:
    """A figure, or None when LINE withholds it (null) or leaves it out."""
    value = item.get(name) if isinstance(item, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def statistics_of(body: Any) -> ChannelStatistics:
    """LINE's "statistics per unit" answer as the core's figures, null ones None."""
    if not isinstance(body, dict):
        raise ChannelUnavailable("LINE's statistics answer was not a JSON object")
    overview = body.get("overview")
    raw_messages, raw_clicks = body.get("messages"), body.get("clicks")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    clicks: list[Any] = raw_clicks if isinstance(raw_clicks, list) else []
    bubbles = tuple(
        BubbleStatistics(
            seq=m["seq"],
            impressions=_count(m, "impression"),
            media_plays=_count(m, "mediaPlayed"),
            unique_media_plays=_count(m, "uniqueMediaPlayed"),
            unique_media_plays_completed=_count(m, "uniqueMediaPlayed100Percent"),
        )
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("seq"), int)
    )
    urls = tuple(
        UrlStatistics(
            seq=c["seq"],
            url=c["url"],
            clicks=_count(c, "click"),
            unique_clicks=_count(c, "uniqueClick"),
        )
        for c in clicks
        if isinstance(c, dict) and isinstance(c.get("seq"), int) and isinstance(c.get("url"), str)
    )
    # Every figure null, and no bubble or URL: LINE answers so alike for too few people to
    # report anything (its privacy threshold) and for nothing counted yet. Both are figures
    # LINE withholds, not zeros; a later read brings them if there come to be enough.
    return ChannelStatistics(
        unique_impressions=_count(overview, "uniqueImpression"),
        unique_clicks=_count(overview, "uniqueClick"),
        unique_media_plays=_count(overview, "uniqueMediaPlayed"),
        bubbles=bubbles,
        urls=urls,
    )


async def fetch(client: LineClient, unit: str, sent: datetime, now: datetime) -> ChannelStatistics:
    """One read of the insight endpoint (no retries: it allows 60 an hour). Raises
    ChannelUnavailable (network trouble, 429, 5xx, any answer not expected) or
    CredentialsInvalid (401, 403) through the client's one table."""
    start, end = period(sent, now)
    try:
        reply = await client.statistics_per_unit(unit, start, end)
    except NETWORK_ERRORS as exc:
        raise ChannelUnavailable(f"network error talking to LINE: {type(exc).__name__}") from exc
    if not reply.ok:
        raise failure(reply, "reading the statistics")
    return statistics_of(reply.body)
