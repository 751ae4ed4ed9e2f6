"""Value types of the channel contract: what plugins receive and return.

All are frozen dataclasses or enums with no behaviour beyond validation helpers, so plugins and the
core exchange plain data.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from broadcaster.domain.messages import Message
from broadcaster.domain.model import AccountTier, FollowerState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import aiohttp

    from broadcaster.channels.posting import Poster


@dataclass(frozen=True, slots=True)
class MessageKind:
    """A kind of bubble a channel accepts and its limits (shown to callers in GetChannel)."""

    # A BroadcastMessage field: "text", "image", "sticker", "video", "audio", "channel_native".
    # The core refuses a bubble of a kind its channel does not declare.
    kind: str
    limits: Mapping[str, int] = field(default_factory=dict)  # e.g. {"max_text_utf16": 5000}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Static limits of a channel type, published by its API."""

    max_recipients_per_request: int
    requests_per_second: float  # the channel's ceiling for the send endpoint
    max_messages: int
    message_kinds: tuple[MessageKind, ...]
    # How long the channel remembers an idempotency key; a batch older than this is never
    # retried blindly, since a retry could message people twice.
    idempotency_window_seconds: int
    # Ceiling for contact sync requests (follower lists, profiles).
    sync_requests_per_second: float

    def kind(self, name: str) -> MessageKind | None:
        """The declared kind called `name`; None when the channel does not take it."""
        return next((k for k in self.message_kinds if k.kind == name), None)


@dataclass(frozen=True, slots=True)
class CredentialField:
    """One credential a channel needs at connect time. Secret ones are encrypted at rest and
    never returned by the API nor logged."""

    name: str
    description: str
    secret: bool = True
    required: bool = True


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What connecting learned about the merchant's account on the channel."""

    account_id: str  # the bot's own id on the channel
    display_name: str
    tier: AccountTier
    picture_uri: str = ""
    handle: str = ""  # e.g. LINE's basic id "@123abcde"


@dataclass(frozen=True, slots=True)
class Eligibility:
    eligible: bool
    reason: str = ""  # a Reason, e.g. Reason.AUDIENCE_NOT_ELIGIBLE
    message: str = ""  # what the merchant can do about it


@dataclass(frozen=True, slots=True)
class ChannelContact:
    """A contact as the channel reports it (follower list, profile)."""

    external_id: str
    display_name: str = ""
    picture_uri: str = ""
    follower_state: FollowerState = FollowerState.FOLLOWING


@dataclass(frozen=True, slots=True)
class ContactPage:
    """One page of a contact sync. `cursor` resumes the sync after this page; None: done."""

    contacts: Sequence[ChannelContact]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Quota:
    """The channel's message quota for the current period."""

    limited: bool
    limit: int | None  # None when unlimited
    used: int

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class SendBatch:
    # External ids, at most max_recipients_per_request. From the dispatcher, a Recipients:
    # `Recipients.json_array()` gives them as a JSON array without decoding each id.
    recipients: Sequence[str]
    messages: Sequence[Message]
    idempotency_key: str  # a UUID, the same for every attempt of this batch
    notification_disabled: bool = False  # a silent send: no notification where the channel can
    # The broadcast's statistics unit (`ReportsStatistics.statistics_unit`): the channel counts
    # the batch's opens and clicks under it. "" when the channel keeps no statistics.
    statistics_unit: str = ""


class SendStatus(enum.Enum):
    ACCEPTED = "accepted"
    ALREADY_ACCEPTED = "already_accepted"  # an earlier attempt with this key got through
    RETRY_LATER = "retry_later"  # transient: 5xx, timeout, reset, rate limit
    INVALID_RECIPIENTS = "invalid_recipients"  # some recipients are named as invalid
    QUOTA_EXHAUSTED = "quota_exhausted"
    FATAL = "fatal"  # will not succeed by retrying (a rejected message, a forbidden API)
    # The channel refused the account's credentials (LINE: 401): nothing more can go out with
    # them, for any broadcast of the channel.
    CREDENTIALS_REFUSED = "credentials_refused"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one send attempt came to. Channels return it; they never raise for these."""

    status: SendStatus
    request_id: str = ""  # the channel's id for the accepted request
    retry_after: float | None = None  # seconds, for RETRY_LATER
    rate_limited: bool = False  # RETRY_LATER because the channel said "too many requests"
    invalid_recipients: tuple[str, ...] = ()
    detail: str = ""  # for operators; never message bodies or secrets
    # Set when an accepted batch went out without its statistics unit: the Reason why
    # (Reason.STATISTICS_ALLOWANCE_USED_UP). The send itself is not affected by it.
    statistics_unavailable: str = ""


class InteractionKind(enum.Enum):
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    MESSAGE = "message"
    POSTBACK = "postback"
    OTHER = "other"  # counts as an interaction (e.g. a reaction) but changes no state


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """One webhook event, reduced to what the core records."""

    event_id: str  # the channel's id for deduplication (LINE: webhookEventId)
    external_id: str
    kind: InteractionKind
    timestamp: datetime
    is_redelivery: bool = False


class EventRefusal(enum.Enum):
    """Why a webhook event was refused (a metrics label: keep the set small and fixed)."""

    INVALID_ID = "invalid_id"  # an event or contact id the channel never issues
    INVALID_TIMESTAMP = "invalid_timestamp"  # missing, unreadable or out of range
    MALFORMED = "malformed"  # not the shape the channel's webhooks have


@dataclass(frozen=True, slots=True)
class RefusedEvent:
    """A signed webhook event that cannot be recorded. The rest of the request still is: a
    plugin returns this in place of the event instead of failing the whole request."""

    refusal: EventRefusal
    detail: str = ""  # for operators: which event and what was wrong; never the value itself


@dataclass(frozen=True, slots=True)
class WebhookSetup:
    """What became of setting a channel's webhook to a URL: whether the channel took the URL
    (`set`), whether its test request then reached the URL and was answered as a webhook
    should be (`verified`), the endpoint the channel now has, and, when something failed, what
    the channel said (`detail`, for the merchant: no credentials in it)."""

    set: bool
    verified: bool
    endpoint: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A credential a channel issues for itself from the account's long-term ones (LINE: a
    short-lived channel access token). `value` is secret: sealed at rest, never logged."""

    value: str
    issue_time: datetime
    renew_time: datetime  # when to renew it: before `expire_time`, by the channel's margin
    expire_time: datetime
    key_id: str = ""  # the channel's own id for it, if it has one (never secret)

    def __repr__(self) -> str:  # never show the value
        return f"IssuedCredential(expire_time={self.expire_time.isoformat()})"


class IssuedCredentials(Protocol):
    """Where a channel keeps the credential it issues for itself: the core's store, sealed and
    shared by every replica (`ChannelRuntime.credentials`)."""

    async def current(self) -> IssuedCredential | None:
        """The stored credential, as the last replica to renew it stored it; None before the
        first (CreateChannel: `connect` issues it)."""
        ...

    async def renew(
        self,
        issue: Callable[[], Awaitable[IssuedCredential]],
        *,
        refused: str | None = None,
    ) -> IssuedCredential:
        """A credential to use now: the stored one unless it is due for renewal, expired, or
        its value is `refused` (the channel just refused it); otherwise a new one from `issue`.
        Across replicas one calls `issue` at a time (a lease); the others keep using the
        stored one while it is valid, or wait for the new one. Errors of `issue` propagate."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelRuntime:
    """What the core lends a channel instance: the process's shared HTTP session and settings,
    where to keep the credential it issues for itself (one store per channel account), and the
    process's `Poster` for the requests of its hot path (channels.posting)."""

    http: aiohttp.ClientSession
    env: Mapping[str, str]
    credentials: IssuedCredentials | None = None
    poster: Poster | None = None
