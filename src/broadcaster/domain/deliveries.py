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
