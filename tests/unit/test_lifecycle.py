"""The broadcast lifecycle's table, and the domain's guards asking it: a transition from a state
outside the table is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broadcaster.domain import lifecycle
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import Broadcast
from broadcaster.domain.deliveries import LIFECYCLE_KINDS, EventKind
from broadcaster.domain.errors import FailedPrecondition
from broadcaster.domain.lifecycle import BroadcastState, Transition
from broadcaster.domain.messages import TextMessage

S = BroadcastState


def test_the_table() -> None:
    assert lifecycle.edges() == {
        (S.DRAFT, S.SENDING),
        (S.DRAFT, S.SENT),
        (S.SENDING, S.SENT),
        (S.SENDING, S.FAILED),
        (S.SENDING, S.CANCELLED),
        (S.DRAFT, S.SCHEDULED),
        (S.SCHEDULED, S.DRAFT),
        (S.SCHEDULED, S.SENDING),
        (S.SCHEDULED, S.SENT),
        (S.SCHEDULED, S.FAILED),
        (S.SCHEDULED, S.CANCELLED),
    }
    assert lifecycle.terminal() == {S.SENT, S.FAILED, S.CANCELLED}
    assert lifecycle.sources(Transition.COMPLETE) == {S.SENDING}
    assert lifecycle.target(Transition.COMPLETE) is S.SENT
    for transition in Transition:  # every event moves the broadcast on
        assert lifecycle.target(transition) not in lifecycle.sources(transition)


def _broadcast(state: BroadcastState) -> Broadcast:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    audience = Audience(InteractionWindow.ALL_CONTACTS)
    return Broadcast("m", "b", "Sale", "c", audience, (TextMessage("hi"),), state, "", now, now)


@pytest.mark.parametrize("state", list(BroadcastState))
def test_guards_refuse_what_the_table_does_not_allow(state: BroadcastState) -> None:
    b = _broadcast(state)
    if lifecycle.allows(Transition.SEND, state):
        b.require_draft()
    else:
        with pytest.raises(FailedPrecondition) as e:
            b.require_draft()
        assert e.value.reason == "BROADCAST_NOT_DRAFT"
    if lifecycle.allows(Transition.UNSCHEDULE, state):
        b.require_scheduled()
    else:
        with pytest.raises(FailedPrecondition) as e:
            b.require_scheduled()
        assert e.value.reason == "BROADCAST_NOT_SCHEDULED"
    if lifecycle.allows(Transition.CANCEL, state):
        b.require_sending()
    else:
        with pytest.raises(FailedPrecondition) as e:
            b.require_sending()
        assert e.value.reason == "BROADCAST_NOT_SENDING"


def test_a_sent_broadcast_cannot_be_cancelled_or_sent_again() -> None:
    sent = _broadcast(S.SENT)
    assert not lifecycle.allows(Transition.CANCEL, S.SENT)
    assert not lifecycle.allows(Transition.SEND, S.SENT)
    with pytest.raises(FailedPrecondition):
        sent.require_sending()
    with pytest.raises(FailedPrecondition):
        sent.require_draft()


@pytest.mark.parametrize("state", list(BroadcastState))
def test_only_the_test_sendable_states_may_be_test_sent(state: BroadcastState) -> None:
    b = _broadcast(state)
    assert lifecycle.may_test_send(state) is (state in lifecycle.TEST_SENDABLE)
    if lifecycle.may_test_send(state):
        b.require_test_sendable()
    else:
        with pytest.raises(FailedPrecondition) as e:
            b.require_test_sendable()
        assert e.value.reason == "BROADCAST_NOT_DRAFT"
    assert {S.DRAFT, S.SCHEDULED} == lifecycle.TEST_SENDABLE


def test_every_transition_records_a_lifecycle_event() -> None:
    """A transition added to the table needs its Message Center event (lifecycle.EVENTS)."""
    assert set(lifecycle.EVENTS) == set(lifecycle.TABLE)
    assert set(lifecycle.EVENTS.values()) <= LIFECYCLE_KINDS
    ended = {lifecycle.EVENTS[t] for t in Transition if lifecycle.target(t) in lifecycle.terminal()}
    assert EventKind.BROADCAST_SENDING not in ended
