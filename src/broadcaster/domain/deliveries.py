"""What became of each recipient of a broadcast, and the Message Center events it causes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from broadcaster.domain.messages import Message
from broadcaster.domain.reasons import Reason

if TYPE_CHECKING:  # broadcasts -> lifecycle -> this module
    from broadcaster.domain.broadcasts import Counters


class DeliveryOutcome(enum.IntEnum):
    PENDING = 0
    SENT = 1
    FAILED = 2  # the channel refused this recipient (reason says why)
    NOT_SENT_CANCELLED = 3
    NOT_SENT_QUOTA = 4
    UNKNOWN = 5  # an attempt may have been accepted; never retried blindly
    NOT_SENT_STOPPED = 6  # the broadcast stopped on an error before this recipient's batch
    NOT_SENT_LIMIT = 7  # left out by the broadcast's recipient limit: never attempted


# What a resend goes to: recipients who surely did not get the broadcast.
UNREACHED = (
    DeliveryOutcome.FAILED,
    DeliveryOutcome.NOT_SENT_CANCELLED,
    DeliveryOutcome.NOT_SENT_QUOTA,
    DeliveryOutcome.NOT_SENT_STOPPED,
    DeliveryOutcome.NOT_SENT_LIMIT,
)


def unsent_when_failed(reason: str) -> DeliveryOutcome:
    """What the recipients a broadcast never attempted become when it fails for `reason`:
    NOT_SENT_QUOTA when the channel's quota ran out (resendable once it renews), else
    NOT_SENT_STOPPED."""
    if reason == Reason.QUOTA_EXHAUSTED:
        return DeliveryOutcome.NOT_SENT_QUOTA
    return DeliveryOutcome.NOT_SENT_STOPPED


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    contact: str
    external_id: str
    outcome: DeliveryOutcome
    reason: str
    # The channel's id for the request that sent it (LINE: X-Line-Request-Id), once its batch
    # was accepted: what the channel's support traces a message with. "" otherwise.
    request_id: str = ""


class EventKind(enum.IntEnum):
    """What a Message Center event records. The API maps the values to its Event.Kind.

    The first two are a recipient's events; the others a step of a broadcast's lifecycle (which
    transition makes which: domain.lifecycle.EVENTS), or of a channel's health (CHANNEL_KINDS:
    no broadcast, no counters)."""

    BROADCAST_MESSAGE = 1
    CONVERSATION_CREATED = 2
    BROADCAST_SENDING = 3
    BROADCAST_SENT = 4
    BROADCAST_FAILED = 5
    BROADCAST_CANCELLED = 6
    BROADCAST_SCHEDULED = 7  # when a broadcast is scheduled
    BROADCAST_UNSCHEDULED = 8  # when a broadcast is unscheduled
    CHANNEL_UNHEALTHY = 9  # a channel turned to need attention (domain.health)
    CHANNEL_HEALTHY = 10  # a channel that needed attention no longer does

    @property
    def of_recipient(self) -> bool:
        return self in RECIPIENT_KINDS


RECIPIENT_KINDS = frozenset({EventKind.BROADCAST_MESSAGE, EventKind.CONVERSATION_CREATED})
LIFECYCLE_KINDS = frozenset(EventKind) - RECIPIENT_KINDS
CHANNEL_KINDS = frozenset({EventKind.CHANNEL_UNHEALTHY, EventKind.CHANNEL_HEALTHY})


class EventPosition(NamedTuple):
    """Where an event stands in a merchant's stream: the outbox row (one accepted batch, or one
    step of a broadcast's lifecycle), the recipient's seq within the broadcast, and which of the
    recipient's events (a conversation created comes before the broadcast message). A lifecycle
    event is the only event of its row, at (row, 0, 1). Positions order as the stream does. A
    tuple: a page builds one per event."""

    row: int
    seq: int
    kind_order: int  # 0: conversation created, 1: broadcast message

    def __str__(self) -> str:
        return f"{self.row}.{self.seq}.{self.kind_order}"

    @classmethod
    def parse(cls, text: str) -> EventPosition:
        """The position `str()` wrote; ValueError otherwise."""
        parts = text.split(".")
        if len(parts) != 3 or not all(p.isdigit() and len(p) < 19 for p in parts):
            raise ValueError(f"not an event position: {text!r}")
        row, seq, kind_order = (int(p) for p in parts)
        if kind_order > 1:
            raise ValueError(f"not an event position: {text!r}")
        return cls(row, seq, kind_order)


START = EventPosition(0, 0, 0)  # before every event (outbox rows count from 1)


class Event(NamedTuple):
    """One Message Center event (a tuple: a page builds a thousand of them). A lifecycle event
    has no contact (""), and carries the broadcast's counters at that moment and, when it
    failed, the reason."""

    position: EventPosition
    merchant: str
    channel: str
    contact: str
    broadcast: str
    kind: EventKind
    create_time: datetime
    counters: Counters | None = None
    failure_reason: str = ""
    # BROADCAST_MESSAGE: the broadcast's bubbles, as the contact received them.
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which of a merchant's events a reader wants: of these kinds (None: every kind), of this
    broadcast (None: of every one)."""

    kinds: frozenset[EventKind] | None = None
    broadcast: str | None = None

    @property
    def rows(self) -> tuple[bool, bool]:
        """Whether recipient rows, and lifecycle rows, can hold wanted events."""
        if self.kinds is None:
            return True, True
        return bool(self.kinds & RECIPIENT_KINDS), bool(self.kinds & LIFECYCLE_KINDS)


EVERY_EVENT = EventFilter()
