"""Between the BroadcastService's and EventService's enums and domain values.

Each map is explicit, so a domain value need not equal its protobuf number. A number the
service does not know maps to nothing: the caller reports it as a field violation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from broadcaster.api.timestamps import timestamp
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.broadcasts import BroadcastState, Counters, RecipientLimit
from broadcaster.domain.deliveries import DeliveryOutcome, EventKind
from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.reasons import Reason
from broadcaster.domain.statistics import Statistics, Summary
from broadcaster.domain.test_sends import TestOutcome
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import event_service_pb2 as event_pb

T = TypeVar("T")

WINDOWS_OUT: dict[InteractionWindow, pb.Audience.InteractionWindow.ValueType] = {
    InteractionWindow.LAST_24_HOURS: pb.Audience.LAST_24_HOURS,
    InteractionWindow.LAST_72_HOURS: pb.Audience.LAST_72_HOURS,
    InteractionWindow.LAST_7_DAYS: pb.Audience.LAST_7_DAYS,
    InteractionWindow.LAST_30_DAYS: pb.Audience.LAST_30_DAYS,
    InteractionWindow.LAST_365_DAYS: pb.Audience.LAST_365_DAYS,
    InteractionWindow.ALL_CONTACTS: pb.Audience.ALL_CONTACTS,
}
_WINDOWS_IN = {int(n): w for w, n in WINDOWS_OUT.items()}

STATES_OUT: dict[BroadcastState, pb.Broadcast.State.ValueType] = {
    BroadcastState.DRAFT: pb.Broadcast.DRAFT,
    BroadcastState.SENDING: pb.Broadcast.SENDING,
    BroadcastState.SENT: pb.Broadcast.SENT,
    BroadcastState.FAILED: pb.Broadcast.FAILED,
    BroadcastState.CANCELLED: pb.Broadcast.CANCELLED,
    BroadcastState.SCHEDULED: pb.Broadcast.SCHEDULED,
}
_STATES_IN = {int(n): s for s, n in STATES_OUT.items()}

OUTCOMES_OUT: dict[DeliveryOutcome, pb.Delivery.Outcome.ValueType] = {
    DeliveryOutcome.PENDING: pb.Delivery.PENDING,
    DeliveryOutcome.SENT: pb.Delivery.SENT,
    DeliveryOutcome.FAILED: pb.Delivery.FAILED,
    DeliveryOutcome.NOT_SENT_CANCELLED: pb.Delivery.NOT_SENT_CANCELLED,
    DeliveryOutcome.NOT_SENT_QUOTA: pb.Delivery.NOT_SENT_QUOTA,
    DeliveryOutcome.UNKNOWN: pb.Delivery.OUTCOME_UNKNOWN,
    DeliveryOutcome.NOT_SENT_STOPPED: pb.Delivery.NOT_SENT_STOPPED,
    DeliveryOutcome.NOT_SENT_LIMIT: pb.Delivery.NOT_SENT_LIMIT,
}
_OUTCOMES_IN = {int(n): o for o, n in OUTCOMES_OUT.items()}

TEST_OUTCOMES_OUT: dict[TestOutcome, pb.TestSendRecipient.Outcome.ValueType] = {
    TestOutcome.SENT: pb.TestSendRecipient.SENT,
    TestOutcome.FAILED: pb.TestSendRecipient.FAILED,
    TestOutcome.SKIPPED: pb.TestSendRecipient.SKIPPED,
}

EVENT_KINDS_OUT: dict[EventKind, event_pb.Event.Kind.ValueType] = {
    EventKind.BROADCAST_MESSAGE: event_pb.Event.BROADCAST_MESSAGE,
    EventKind.CONVERSATION_CREATED: event_pb.Event.CONVERSATION_CREATED,
    EventKind.BROADCAST_SENDING: event_pb.Event.BROADCAST_SENDING,
    EventKind.BROADCAST_SENT: event_pb.Event.BROADCAST_SENT,
    EventKind.BROADCAST_FAILED: event_pb.Event.BROADCAST_FAILED,
    EventKind.BROADCAST_CANCELLED: event_pb.Event.BROADCAST_CANCELLED,
    EventKind.BROADCAST_SCHEDULED: event_pb.Event.BROADCAST_SCHEDULED,
    EventKind.BROADCAST_UNSCHEDULED: event_pb.Event.BROADCAST_UNSCHEDULED,
    EventKind.CHANNEL_UNHEALTHY: event_pb.Event.CHANNEL_UNHEALTHY,
    EventKind.CHANNEL_HEALTHY: event_pb.Event.CHANNEL_HEALTHY,
}
_EVENT_KINDS_IN = {int(n): k for k, n in EVENT_KINDS_OUT.items()}


def window_in(number: int) -> InteractionWindow | None:
    """The window a request names; None when unset (0) or unknown, which the service refuses
    with the list of windows it accepts."""
    return _WINDOWS_IN.get(number)


def _filter_in(table: Mapping[int, T], number: int, field: str, what: str) -> T | None:
    """The value a filter names; None when unset (0); a field violation when unknown."""
    if not number:
        return None
    found = table.get(number)
    if found is None:
        raise InvalidArgument([FieldViolation(field, f"unknown {what} {number}")])
    return found


def limit_in(
    request: pb.SendBroadcastRequest | pb.EstimateAudienceRequest | pb.ScheduleBroadcastRequest,
) -> RecipientLimit | None:
    """The recipient limit a request names; None when unset. The number's range is the
    service's rule (domain.rules); the message's shape is checked here."""
    if not request.HasField("recipient_limit"):
        return None
    limit = request.recipient_limit
    kind = limit.WhichOneof("limit")
    if kind == "max_recipients":
        return RecipientLimit(limit.max_recipients)
    if kind == "remaining_quota" and limit.remaining_quota:
        return RecipientLimit(None)
    raise InvalidArgument(
        [
            FieldViolation(
                "recipient_limit",
                "set max_recipients (a number) or remaining_quota (true), or leave it unset",
            )
        ]
    )


def limit_out(limit: RecipientLimit) -> pb.RecipientLimit:
    if limit.max_recipients is None:
        return pb.RecipientLimit(remaining_quota=True)
    return pb.RecipientLimit(max_recipients=limit.max_recipients)


def state_in(number: int, field: str) -> BroadcastState | None:
    """The state a filter names; None when unset (0)."""
    return _filter_in(_STATES_IN, number, field, "state")


def outcome_in(number: int, field: str) -> DeliveryOutcome | None:
    """The outcome a filter names; None when unset (0)."""
    return _filter_in(_OUTCOMES_IN, number, field, "outcome")


def kinds_in(numbers: Sequence[int], field: str) -> frozenset[EventKind] | None:
    """The event kinds a filter names; None when it names none (every kind); a field violation
    for each number unset or unknown."""
    if not numbers:
        return None
    found = {_EVENT_KINDS_IN.get(n) for n in numbers}
    unknown = [
        FieldViolation(f"{field}[{i}]", f"unknown event kind {n}")
        for i, n in enumerate(numbers)
        if n not in _EVENT_KINDS_IN
    ]
    if unknown:
        raise InvalidArgument(unknown)
    return frozenset(k for k in found if k is not None)


def counters_out(c: Counters) -> pb.BroadcastCounters:
    """A broadcast's counters, on the Broadcast and on its lifecycle events."""
    return pb.BroadcastCounters(
        total=c.total,
        sent=c.sent,
        failed=c.failed,
        excluded=c.excluded,
        left_out_by_limit=c.left_out_by_limit,
    )


def summary_out(summary: Summary) -> pb.BroadcastStatisticsSummary:
    out = pb.BroadcastStatisticsSummary(unavailable_reason=summary.unavailable_reason)
    if summary.open_rate is not None:
        out.open_rate = summary.open_rate
    if summary.click_rate is not None:
        out.click_rate = summary.click_rate
    if summary.fetch_time is not None:
        out.fetch_time.CopyFrom(timestamp(summary.fetch_time))
    return out


def _withheld(path: str, values: Mapping[str, int | None]) -> list[pb.UnavailableFigure]:
    return [
        pb.UnavailableFigure(field=f"{path}{name}", reason=Reason.STATISTICS_WITHHELD)
        for name, value in values.items()
        if value is None
    ]


def statistics_out(name: str, st: Statistics) -> pb.BroadcastStatistics:
    """GetBroadcastStatistics' answer: a figure not known is left unset (proto3 `optional`),
    never 0; with figures read, each one left unset is named in `unavailable_figures`."""
    out = pb.BroadcastStatistics(
        name=name, delivered=st.delivered, unavailable_reason=st.unavailable_reason
    )
    if st.fetch_time is not None:
        out.fetch_time.CopyFrom(timestamp(st.fetch_time))
    f = st.figures
    if f is None:
        return out
    _set(out, "unique_impressions", f.unique_impressions)
    _set(out, "unique_clicks", f.unique_clicks)
    _set(out, "unique_media_plays", f.unique_media_plays)
    _set(out, "open_rate", st.open_rate)
    _set(out, "click_rate", st.click_rate)
    missing = _withheld(
        "",
        {
            "unique_impressions": f.unique_impressions,
            "unique_clicks": f.unique_clicks,
            "unique_media_plays": f.unique_media_plays,
        },
    )
    for i, b in enumerate(f.bubbles):
        bubble = out.bubbles.add(seq=b.seq)
        values = {
            "impressions": b.impressions,
            "media_plays": b.media_plays,
            "unique_media_plays": b.unique_media_plays,
            "unique_media_plays_completed": b.unique_media_plays_completed,
        }
        for field, value in values.items():
            _set(bubble, field, value)
        missing += _withheld(f"bubbles[{i}].", values)
    for i, u in enumerate(f.urls):
        url = out.urls.add(seq=u.seq, url=u.url)
        values = {"clicks": u.clicks, "unique_clicks": u.unique_clicks}
        for field, value in values.items():
            _set(url, field, value)
        missing += _withheld(f"urls[{i}].", values)
    out.unavailable_figures.extend(missing)
    return out


def _set(message: Message, field: str, value: float | None) -> None:
    if value is not None:
        setattr(message, field, value)
