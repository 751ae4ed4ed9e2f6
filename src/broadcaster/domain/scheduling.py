"""When a broadcast may be scheduled for: from a minimum lead time (one minute) to 180 days
ahead of the moment ScheduleBroadcast is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from broadcaster.domain.errors import Violations
from broadcaster.domain.reasons import Reason

MIN_LEAD = timedelta(minutes=1)
MAX_LEAD = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class ScheduleWindow:
    min_lead: timedelta = MIN_LEAD
    max_lead: timedelta = MAX_LEAD


def check_schedule_time(
    v: Violations,
    when: datetime | None,
    now: datetime,
    window: ScheduleWindow,
    field: str = "schedule_time",
) -> None:
    """Add the violation, with its own reason, of a schedule time outside the window."""
    reason: Reason | None = None
    if when is None:
        reason, text = Reason.SCHEDULE_TIME_MISSING, "is required: when to send the broadcast"
    elif when <= now:
        reason, text = Reason.SCHEDULE_TIME_PAST, "must be in the future"
    elif when - now < window.min_lead:
        seconds = int(window.min_lead.total_seconds())
        reason, text = Reason.SCHEDULE_TIME_TOO_SOON, f"must be at least {seconds} s ahead"
    elif when - now > window.max_lead:
        days = window.max_lead.days
        reason, text = Reason.SCHEDULE_TIME_TOO_FAR, f"must be at most {days} days ahead"
    if reason is not None:
        v.add(field, text, reason)
        v.reason = reason
