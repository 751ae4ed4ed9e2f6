"""Test sends: a draft's messages sent now to a few named contacts, and what became of each.

A test send is recorded on its broadcast and changes nothing else about it: not its state,
counters, deliveries or Message Center events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

MAX_CONTACTS = 10  # contacts one test send may name


class TestOutcome(enum.IntEnum):
    """What became of one contact of a test send. The values are stored; the API maps them."""

    __test__ = False  # not a pytest test class

    SENT = 1  # the channel accepted the messages for this contact
    FAILED = 2  # the channel refused them for this contact (the reason says why)
    SKIPPED = 3  # not sent: the contact opted out or blocked the account


@dataclass(frozen=True, slots=True)
class TestRecipient:
    """One contact of a test send."""

    __test__ = False

    contact: str  # contact id
    outcome: TestOutcome
    reason: str = ""  # a Reason, for FAILED and SKIPPED


@dataclass(frozen=True, slots=True)
class TestSend:
    """One test send of a broadcast."""

    __test__ = False

    merchant: str
    broadcast: str  # broadcast id
    id: str
    channel: str  # channel id: the contacts' channel
    recipients: tuple[TestRecipient, ...]
    requested_by: str  # the caller's label
    create_time: datetime
