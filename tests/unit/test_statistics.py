"""The statistics schedule (hourly the first day, then daily, the last read at the window's
end; backoff after failures), the pace of reads, and rates that are never made up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.reasons import Reason
from broadcaster.domain.statistics import (
    ChannelStatistics,
    Schedule,
    Statistics,
    pace_step,
    rate,
    summary_of,
    whole_reason,
)

SENT = datetime(2026, 12, 1, 9, tzinfo=UTC)
WINDOW = timedelta(days=14)
H = timedelta(hours=1)


def test_hourly_during_the_first_day_then_daily_until_the_window_ends() -> None:
    s = Schedule()
    assert s.first(SENT) == SENT + H
    assert s.after(SENT, SENT + H, WINDOW) == SENT + 2 * H
    assert s.after(SENT, SENT + 23 * H, WINDOW) == SENT + 24 * H
    assert s.after(SENT, SENT + 24 * H, WINDOW) == SENT + 48 * H
    # The last read is at the window's end, not past it; after it, none.
    assert s.after(SENT, SENT + WINDOW - 2 * H, WINDOW) == SENT + WINDOW
    assert s.after(SENT, SENT + WINDOW, WINDOW) is None
    assert s.after(SENT, SENT + WINDOW + H, WINDOW) is None


def test_a_whole_collection_reads_about_37_times() -> None:
    s = Schedule()
    read, reads = s.first(SENT), 0
    while True:
        reads += 1
        following = s.after(SENT, read, WINDOW)
        if following is None:
            break
        assert following > read
        read = following
    assert reads == 24 + 13  # hourly from +1 h to +24 h, then daily from +2 d to +14 d


@given(st.integers(min_value=1, max_value=200))
def test_backoff_grows_and_is_capped(failures: int) -> None:
    s = Schedule()
    wait = s.retry(failures, SENT) - SENT
    assert s.retry_min <= wait <= s.retry_max
    assert s.retry(failures + 1, SENT) - SENT >= wait


@given(st.integers(min_value=0, max_value=40 * 24 * 60))
def test_failed_reads_are_given_up_only_past_the_window_and_its_grace(minutes: int) -> None:
    s = Schedule()
    window = timedelta(days=14)
    retry = SENT + timedelta(minutes=minutes)
    assert s.gives_up(SENT, retry, window) == (retry - SENT > window + s.grace)


def test_pace_stays_under_the_ceiling() -> None:
    step = pace_step(1_000.0)
    assert 3600 / step.total_seconds() < 1_000.0
    assert 3600 / step.total_seconds() > 900.0


def test_rates_are_unknown_rather_than_made_up() -> None:
    assert rate(None, 100) is None
    assert rate(5, 0) is None
    assert rate(0, 100) == 0.0
    assert rate(25, 100) == 0.25
    assert rate(150, 100) == 1.0  # a channel's late count never shows above everyone


def test_withheld_figures_give_no_rate_and_no_reason_for_the_whole() -> None:
    figures = ChannelStatistics(unique_impressions=20, unique_clicks=None)
    s = Statistics(delivered=40, figures=figures)
    assert (s.open_rate, s.click_rate) == (0.5, None)
    assert whole_reason("", s.figures) == ""
    nothing = Statistics(delivered=40)
    assert (nothing.open_rate, nothing.click_rate) == (None, None)
    assert whole_reason("", None) == Reason.STATISTICS_NOT_YET
    assert whole_reason(Reason.STATISTICS_NOT_SUPPORTED, None) == Reason.STATISTICS_NOT_SUPPORTED


def test_the_summary_reads_from_its_columns() -> None:
    unread = summary_of(10, "", None, None, None)
    assert unread.unavailable_reason == Reason.STATISTICS_NOT_YET and unread.open_rate is None
    read = summary_of(10, "", 4, None, SENT)
    assert (read.open_rate, read.click_rate, read.unavailable_reason) == (0.4, None, "")
