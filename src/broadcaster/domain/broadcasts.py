"""Broadcasts: what they hold, the guards of their lifecycle (domain.lifecycle), and how they
are described."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from broadcaster.domain import lifecycle
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.errors import FailedPrecondition
from broadcaster.domain.lifecycle import BroadcastState as BroadcastState
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.messages import Message, preview
from broadcaster.domain.reasons import Reason
from broadcaster.domain.rules import MAX_DISPLAY_NAME
from broadcaster.domain.statistics import Summary


@dataclass(frozen=True, slots=True)
class Counters:
    total: int = 0
    sent: int = 0
    failed: int = 0
    excluded: int = 0
    left_out_by_limit: int = 0  # reachable, but past the recipient limit


@dataclass(frozen=True, slots=True)
class RecipientLimit:
    """Recipient limit: a send takes at most this many of the eligible recipients, most recent
    interaction first (never interacted last), ties by contact id; the rest are left out."""

    max_recipients: int | None  # None: the channel's remaining quota when sending

    def cap(self, quota_remaining: int | None) -> int | None:
        """The number of recipients it allows; None: all (a channel without a quota)."""
        return quota_remaining if self.max_recipients is None else self.max_recipients


@dataclass(frozen=True, slots=True)
class Estimate:
    matched: int
    opted_out: int
    unreachable: int
    quota_limited: bool
    quota_remaining: int | None
    eligible: bool
    ineligible_reason: str
    ineligible_message: str
    estimate_time: datetime
    # Recipient limit: how many recipients the limit allows; None: no limit.
    limit: int | None = None
    # Whether every follower of the channel is a contact (domain.health.followers_complete),
    # and when the follower list was last read whole.
    followers_complete: bool = False
    followers_sync_time: datetime | None = None

    @property
    def expected_recipients(self) -> int:
        return self.matched - self.opted_out - self.unreachable

    @property
    def capped_recipients(self) -> int:
        """Expected recipients the limit lets through (all of them without a limit)."""
        expected = self.expected_recipients
        return expected if self.limit is None else min(expected, self.limit)

    @property
    def left_out_by_limit(self) -> int:
        return self.expected_recipients - self.capped_recipients

    @property
    def exceeds_quota(self) -> bool:
        return self.quota_remaining is not None and self.capped_recipients > self.quota_remaining


class ListOrder(enum.Enum):
    """ListBroadcasts' orders, by their `order_by` spelling."""

    CREATE_TIME_DESC = "create_time desc"  # newest first (the default)
    SEND_TIME_DESC = "send_time desc"  # last sent first; unsent ones last, newest first
    SCHEDULE_TIME_ASC = "schedule_time asc"  # next due first; unscheduled last, oldest first


@dataclass(frozen=True, slots=True)
class ListFilter:
    """What ListBroadcasts lists, and in which order."""

    contains: str = ""
    state: BroadcastState | None = None
    channel: str | None = None  # channel id
    channel_type: str = ""
    sent_after: datetime | None = None  # inclusive
    sent_before: datetime | None = None  # exclusive
    order: ListOrder = ListOrder.CREATE_TIME_DESC


@dataclass(frozen=True, slots=True)
class Broadcast:
    merchant: str
    id: str
    display_name: str
    channel: str  # channel id
    audience: Audience
    messages: tuple[Message, ...]
    state: BroadcastState
    group_name: str  # the customer group's name when last saved, for the target summary
    create_time: datetime
    update_time: datetime
    counters: Counters = field(default_factory=Counters)
    send_estimate: Estimate | None = None
    failure_reason: str = ""
    copied_from: str = ""  # broadcast id
    resend_of: str = ""  # broadcast id: goes to that broadcast's unreached recipients
    send_time: datetime | None = None
    complete_time: datetime | None = None
    recipient_limit: RecipientLimit | None = None  # the limit it was sent with
    schedule_time: datetime | None = None  # while SCHEDULED, and kept once it fired
    notification_disabled: bool = False  # a silent send
    # Its statistics in brief, as last read from its channel.
    statistics: Summary = field(default_factory=Summary)

    @property
    def previews(self) -> tuple[str, ...]:
        """Each bubble as plain text, for lists and the Message Center."""
        return tuple(preview(m) for m in self.messages)

    def require_draft(self) -> None:
        """Only a broadcast that can still be sent can be changed."""
        if not lifecycle.allows(Transition.SEND, self.state):
            if lifecycle.allows(Transition.UNSCHEDULE, self.state):
                raise FailedPrecondition(
                    "Only drafts can be changed; this broadcast is scheduled. Unschedule it "
                    "first (it becomes a draft again), then edit and schedule it again.",
                    reason=Reason.BROADCAST_NOT_DRAFT,
                    state=self.state.name,
                )
            raise FailedPrecondition(
                f"Only drafts can be changed; this broadcast is {self.state.name.lower()}. "
                "Copy it to make a new draft.",
                reason=Reason.BROADCAST_NOT_DRAFT,
                state=self.state.name,
            )

    def require_test_sendable(self) -> None:
        """Only a broadcast not yet sent can be test sent (lifecycle.TEST_SENDABLE)."""
        if not lifecycle.may_test_send(self.state):
            raise FailedPrecondition(
                "Only drafts and scheduled broadcasts can be test sent; this broadcast is "
                f"{self.state.name.lower()}. "
                "Copy it to make a new draft.",
                reason=Reason.BROADCAST_NOT_DRAFT,
                state=self.state.name,
            )

    def require_channel(self, channel: str) -> None:
        """A resend goes to its source's unreached recipients, who are contacts of the source's
        channel: it cannot move to another channel (`channel`, an id)."""
        if self.resend_of and channel != self.channel:
            raise FailedPrecondition(
                "A resend goes to the recipients its original broadcast did not reach, on that "
                "broadcast's channel: its channel cannot change. Set a new audience to make it "
                "an ordinary draft, or create a new broadcast on the other channel.",
                reason=Reason.RESEND_CHANNEL_FIXED,
                channel=self.channel,
            )

    def require_sending(self) -> None:
        if not lifecycle.allows(Transition.CANCEL, self.state):
            raise FailedPrecondition(
                "Only a sending or scheduled broadcast can be cancelled; this one is "
                f"{self.state.name.lower()}.",
                reason=Reason.BROADCAST_NOT_SENDING,
                state=self.state.name,
            )

    def require_scheduled(self) -> None:
        if not lifecycle.allows(Transition.UNSCHEDULE, self.state):
            raise FailedPrecondition(
                f"Only a scheduled broadcast can be unscheduled; this one is "
                f"{self.state.name.lower()}.",
                reason=Reason.BROADCAST_NOT_SCHEDULED,
                state=self.state.name,
            )


_WINDOW_WORDS = {
    InteractionWindow.LAST_24_HOURS: "Interacted in the last 24 hours",
    InteractionWindow.LAST_72_HOURS: "Interacted in the last 72 hours",
    InteractionWindow.LAST_7_DAYS: "Interacted in the last 7 days",
    InteractionWindow.LAST_30_DAYS: "Interacted in the last 30 days",
    InteractionWindow.LAST_365_DAYS: "Interacted in the last 365 days",
    InteractionWindow.ALL_CONTACTS: "All contacts",
}


def target_summary(audience: Audience, group_name: str, resend: bool = False) -> str:
    """ "Interacted in the last 7 days · VIP customers"."""
    if resend:
        return "Recipients not reached by the original broadcast"
    who = group_name if audience.customer_group else "All customers"
    return f"{_WINDOW_WORDS[audience.window]} · {who}"


def copy_name(name: str) -> str:
    copied = f"Copy of {name}"
    return copied if len(copied) <= MAX_DISPLAY_NAME else copied[: MAX_DISPLAY_NAME - 1] + "…"
