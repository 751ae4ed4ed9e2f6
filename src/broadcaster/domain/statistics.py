"""A broadcast's statistics: the figures its channel reports (opens, clicks), why one is missing,
and when they are read again.

The figures keep changing for a while after a send; a channel like LINE updates them often
during the first day and then about daily, and stops after its statistics window (LINE: 14
days). So they are read hourly during the first day, then daily, until the window ends
(`Schedule`). A figure the channel withholds or does not report is None, never zero, and a
reason says why (`Reason.STATISTICS_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from broadcaster.domain.reasons import Reason


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a broadcast's figures are read: `early_interval` apart during `early_period` after
    the send, then `late_interval` apart, the last read at the end of the channel's window; a
    failed read is tried again after `retry_min`, doubling up to `retry_max`, until `grace`
    past the end of the window (a channel unreachable that long, or refusing the credentials,
    is not waited for any longer)."""

    early_interval: timedelta = timedelta(hours=1)
    early_period: timedelta = timedelta(days=1)
    late_interval: timedelta = timedelta(days=1)
    retry_min: timedelta = timedelta(minutes=5)
    retry_max: timedelta = timedelta(hours=6)
    grace: timedelta = timedelta(days=1)

    def first(self, sent: datetime) -> datetime:
        """The first read of a broadcast sent at `sent`."""
        return sent + self.early_interval

    def after(self, sent: datetime, read: datetime, window: timedelta) -> datetime | None:
        """The read after one at `read`, within the channel's `window` from `sent`; None once
        the read at (or past) the window's end is done: the figures no longer change."""
        end = sent + window
        if read >= end:
            return None
        step = self.early_interval if read - sent < self.early_period else self.late_interval
        return min(read + step, end)

    def retry(self, failures: int, now: datetime) -> datetime:
        """When to try again after `failures` failed reads in a row (1: the first)."""
        backoff = self.retry_min * (1 << max(0, min(failures - 1, 20)))
        return now + min(backoff, self.retry_max)

    def gives_up(self, sent: datetime, retry: datetime, window: timedelta) -> bool:
        """Whether a failed read of a broadcast sent at `sent` is tried no more, its retry (at
        `retry`) coming more than `grace` past the end of the channel's `window`."""
        return retry > sent + window + self.grace


#: The share of a channel's ceiling for statistics reads that the collection uses: below it,
#: so that no hour as the channel counts it holds more than its ceiling.
PACE_SHARE = 0.95


def pace_step(requests_per_hour: float) -> timedelta:
    """How far apart a channel account's statistics reads are, across all replicas."""
    return timedelta(seconds=3600.0 / (max(requests_per_hour, 1e-6) * PACE_SHARE))


def rate(part: int | None, whole: int) -> float | None:
    """`part` of `whole` as a fraction; None when the part is unknown or nobody received it."""
    if part is None or whole <= 0:
        return None
    return min(part / whole, 1.0)


@dataclass(frozen=True, slots=True)
class BubbleStatistics:
    """How one bubble of a broadcast fared. None: the channel withholds the figure (too few
    people to report it) or has none for this kind of bubble; never a stand-in for zero."""

    seq: int  # the bubble's position in the broadcast, from 1
    impressions: int | None = None  # times it was shown
    media_plays: int | None = None  # times a video or audio bubble was played
    unique_media_plays: int | None = None  # people who played it
    unique_media_plays_completed: int | None = None  # people who played it to the end


@dataclass(frozen=True, slots=True)
class UrlStatistics:
    """Clicks on one URL of one bubble. None as in BubbleStatistics."""

    seq: int  # the bubble's position, from 1
    url: str
    clicks: int | None = None
    unique_clicks: int | None = None  # people who clicked it


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A broadcast's engagement as its channel reports it at one moment (figures keep changing
    for days after a send). None: withheld or not reported, never zero."""

    unique_impressions: int | None = None  # people who opened it
    unique_clicks: int | None = None  # people who clicked any URL in it
    unique_media_plays: int | None = None  # people who played any video or audio in it
    bubbles: tuple[BubbleStatistics, ...] = ()
    urls: tuple[UrlStatistics, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary:
    """What a broadcast list shows of its statistics."""

    open_rate: float | None = None
    click_rate: float | None = None
    fetch_time: datetime | None = None
    unavailable_reason: str = ""  # why there are no figures at all ("" when there are)


@dataclass(frozen=True, slots=True)
class Statistics:
    """A broadcast's statistics as last read: `delivered` is how many recipients its channel
    accepted; `figures` None when none were read yet (or none can be)."""

    delivered: int
    figures: ChannelStatistics | None = None
    fetch_time: datetime | None = None
    # Why the broadcast has no figures at all: Reason.STATISTICS_NOT_SUPPORTED,
    # _ALLOWANCE_USED_UP, _NOT_YET or _NOT_COLLECTED. "" when it has them.
    unavailable_reason: str = ""

    @property
    def open_rate(self) -> float | None:
        f = self.figures
        return None if f is None else rate(f.unique_impressions, self.delivered)

    @property
    def click_rate(self) -> float | None:
        f = self.figures
        return None if f is None else rate(f.unique_clicks, self.delivered)


def whole_reason(stored: str, figures: ChannelStatistics | None) -> str:
    """Why a broadcast has no figures: the reason stored for it (STATISTICS_NOT_COLLECTED once
    its reads ended without any), else STATISTICS_NOT_YET while nothing was read; "" once
    figures are there."""
    if stored:
        return stored
    return Reason.STATISTICS_NOT_YET if figures is None else ""


def summary_of(
    delivered: int,
    stored_reason: str,
    unique_impressions: int | None,
    unique_clicks: int | None,
    fetch_time: datetime | None,
) -> Summary:
    """The list summary from the summary columns alone (`fetch_time` None: never read)."""
    figures = (
        None
        if fetch_time is None
        else ChannelStatistics(unique_impressions=unique_impressions, unique_clicks=unique_clicks)
    )
    return Summary(
        open_rate=None if figures is None else rate(unique_impressions, delivered),
        click_rate=None if figures is None else rate(unique_clicks, delivered),
        fetch_time=fetch_time,
        unavailable_reason=whole_reason(stored_reason, figures),
    )
