"""The core's screen over whatever a plugin's parse_webhook returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.channels import EventRefusal, InteractionEvent, InteractionKind, RefusedEvent
from broadcaster.services.webhooks import MAX_EVENT_ID, screen

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def event(event_id: str = "ev-1", external_id: str = "u1", **kw: object) -> InteractionEvent:
    return InteractionEvent(
        event_id=event_id,
        external_id=external_id,
        kind=kw.pop("kind", InteractionKind.MESSAGE),  # type: ignore[arg-type]
        timestamp=kw.pop("timestamp", NOW - timedelta(seconds=1)),  # type: ignore[arg-type]
    )


def _safe(value: str, most: int) -> bool:
    return 0 < len(value) <= most and all(c.isprintable() and not c.isspace() for c in value)


@given(st.text(max_size=300), st.text(max_size=300))
def test_only_short_printable_ids_get_through(event_id: str, external_id: str) -> None:
    kept, refused = screen([event(event_id, external_id)], NOW)

    if _safe(event_id, MAX_EVENT_ID) and _safe(external_id, 128):
        assert kept == [event(event_id, external_id)] and refused == []
    else:
        assert kept == [] and [r.refusal for r in refused] == [EventRefusal.INVALID_ID]
    for e in kept:
        assert "\x00" not in e.event_id + e.external_id


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_never_pass_the_moment_of_receipt(when: datetime) -> None:
    (kept,), refused = screen([event(timestamp=when)], NOW)

    assert refused == []
    assert kept.timestamp == min(when, NOW)


def test_naive_timestamps_non_events_and_plugin_refusals() -> None:
    own = RefusedEvent(EventRefusal.INVALID_TIMESTAMP, "events[3]")
    kept, refused = screen(
        [
            event(timestamp=datetime(2026, 1, 1)),  # no time zone
            "not an event",
            event(kind="follow"),
            own,
            event(),
        ],
        NOW,
    )

    assert kept == [event()]
    assert [r.refusal for r in refused] == [
        EventRefusal.INVALID_TIMESTAMP,
        EventRefusal.MALFORMED,
        EventRefusal.MALFORMED,
        EventRefusal.INVALID_TIMESTAMP,
    ]
    assert own in refused
