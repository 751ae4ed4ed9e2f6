"""What became of each recipient of a broadcast, and the Message Center events it causes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class DeliveryOutcome(enum.IntEnum):
    PENDING = 0
    SENT = 1
    FAILED = 2  # the channel refused this recipient (reason says why)
    NOT_SENT_CANCELLED = 3
    NOT_SENT_QUOTA = 4
    UNKNOWN = 5  # an attempt may have been accepted; never retried blindly
    NOT_SENT_STOPPED = 6  # the broadcast stopped on an error before this recipient's batch


# What a resend goes to: recipients who surely did not get the broadcast.
UNREACHED = (
    DeliveryOutcome.FAILED,
    DeliveryOutcome.NOT_SENT_CANCELLED,
    DeliveryOutcome.NOT_SENT_QUOTA,
    DeliveryOutcome.NOT_SENT_STOPPED,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    contact: str
    external_id: str
    outcome: DeliveryOutcome
    reason: str


class EventKind(enum.IntEnum):
    """Values match the API's Event.Kind."""

    BROADCAST_MESSAGE = 1
    CONVERSATION_CREATED = 2


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    merchant: str
    channel: str
    contact: str
    broadcast: str
    kind: EventKind
    create_time: datetime
