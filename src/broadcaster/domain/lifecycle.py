"""The broadcast lifecycle: its states, and the transitions between them, each named by the event
that causes it.

    DRAFT --SEND--> SENDING --COMPLETE--> SENT
      | |              |----FAIL------> FAILED
      | |              '----CANCEL----> CANCELLED
      | '--SEND_EMPTY--> SENT
      |
      '--SCHEDULE--> SCHEDULED --FIRE--> SENDING
           ^             |----FIRE_EMPTY--> SENT
           |             |----FAIL------> FAILED      (a precondition no longer holds at its time)
           |             |----CANCEL----> CANCELLED
           '-UNSCHEDULE--'

The table below is the only place that says which state may follow which. The domain's guards
(`Broadcast.require_draft`, `require_sending`) ask it, and the store's set-based SQL takes the
states of every UPDATE of a broadcast's state from it; a test holds the SQL to it. A new state
is a new member of `BroadcastState` and a few rows here.

Every transition is also a Message Center event, recorded in the transaction that makes it
(store.events.record_transitions): `EVENTS` says which.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from broadcaster.domain.deliveries import EventKind


class BroadcastState(enum.IntEnum):
    """Where a broadcast is in its lifecycle. The values are stored; the API maps them."""

    DRAFT = 1
    SENDING = 2
    SENT = 3
    FAILED = 4
    CANCELLED = 5
    SCHEDULED = 6


class Transition(enum.Enum):
    """The events that move a broadcast from one state to another."""

    SEND = "send"  # the send is accepted: its recipients are fixed and dispatch starts
    SEND_EMPTY = "send_empty"  # the send is accepted with no recipient: nothing to dispatch
    COMPLETE = "complete"  # the last of its batches is recorded
    FAIL = "fail"  # it cannot go on (quota exhausted, the channel rejects it or is gone)
    CANCEL = "cancel"  # the merchant cancels it
    SCHEDULE = "schedule"  # the draft is to be sent at a time of the merchant's choosing
    UNSCHEDULE = "unschedule"  # the merchant takes it back to edit it
    FIRE = "fire"  # its time came and the send is accepted, as SEND
    FIRE_EMPTY = "fire_empty"  # its time came and the send is accepted with no recipient


@dataclass(frozen=True, slots=True)
class Rule:
    sources: frozenset[BroadcastState]  # the states the transition may start from
    target: BroadcastState


def _rule(sources: set[BroadcastState], target: BroadcastState) -> Rule:
    return Rule(frozenset(sources), target)


_S = BroadcastState
TABLE: Mapping[Transition, Rule] = MappingProxyType(
    {
        Transition.SEND: _rule({_S.DRAFT}, _S.SENDING),
        Transition.SEND_EMPTY: _rule({_S.DRAFT}, _S.SENT),
        Transition.COMPLETE: _rule({_S.SENDING}, _S.SENT),
        Transition.FAIL: _rule({_S.SENDING, _S.SCHEDULED}, _S.FAILED),
        Transition.CANCEL: _rule({_S.SENDING, _S.SCHEDULED}, _S.CANCELLED),
        Transition.SCHEDULE: _rule({_S.DRAFT}, _S.SCHEDULED),
        Transition.UNSCHEDULE: _rule({_S.SCHEDULED}, _S.DRAFT),
        Transition.FIRE: _rule({_S.SCHEDULED}, _S.SENDING),
        Transition.FIRE_EMPTY: _rule({_S.SCHEDULED}, _S.SENT),
    }
)


# The states whose messages may be sent now to a few named contacts (SendTestBroadcast): a
# test send changes no state, so it is not a transition. A scheduled broadcast may still be
# tried before its time.
TEST_SENDABLE: frozenset[BroadcastState] = frozenset({_S.DRAFT, _S.SCHEDULED})


def may_test_send(state: BroadcastState) -> bool:
    """Whether a broadcast in `state` may be test sent."""
    return state in TEST_SENDABLE


# The Message Center event each transition records. A scheduled broadcast's start at its time
# (FIRE) reads as any other start of sending.
EVENTS: Mapping[Transition, EventKind] = MappingProxyType(
    {
        Transition.SEND: EventKind.BROADCAST_SENDING,
        Transition.SEND_EMPTY: EventKind.BROADCAST_SENT,
        Transition.COMPLETE: EventKind.BROADCAST_SENT,
        Transition.FAIL: EventKind.BROADCAST_FAILED,
        Transition.CANCEL: EventKind.BROADCAST_CANCELLED,
        Transition.SCHEDULE: EventKind.BROADCAST_SCHEDULED,
        Transition.UNSCHEDULE: EventKind.BROADCAST_UNSCHEDULED,
        Transition.FIRE: EventKind.BROADCAST_SENDING,
        Transition.FIRE_EMPTY: EventKind.BROADCAST_SENT,
    }
)


def sources(transition: Transition) -> frozenset[BroadcastState]:
    """The states `transition` may start from."""
    return TABLE[transition].sources


def target(transition: Transition) -> BroadcastState:
    """The state `transition` ends in."""
    return TABLE[transition].target


def allows(transition: Transition, state: BroadcastState) -> bool:
    """Whether a broadcast in `state` may take `transition`."""
    return state in TABLE[transition].sources


def edges() -> frozenset[tuple[BroadcastState, BroadcastState]]:
    """Every (from, to) pair of states the table allows."""
    return frozenset((s, rule.target) for rule in TABLE.values() for s in rule.sources)


def terminal() -> frozenset[BroadcastState]:
    """The states no transition leaves."""
    left = {s for rule in TABLE.values() for s in rule.sources}
    return frozenset(s for s in BroadcastState if s not in left)
