"""The resources of the product as plain values."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from broadcaster.domain.health import Upkeep


class FollowerState(enum.IntEnum):
    """Whether a contact follows the merchant's account. The values are stored; the API maps
    them to its own enum."""

    UNKNOWN = 0
    FOLLOWING = 1
    BLOCKED = 2


class AccountTier(enum.IntEnum):
    """A channel account's tier. The values are stored; the API maps them."""

    STANDARD = 1
    VERIFIED = 2
    PREMIUM = 3


class ChannelState(enum.IntEnum):
    """Whether a channel can send. The values are stored; the API maps them."""

    CONNECTED = 1
    CREDENTIALS_INVALID = 2


class CredentialState(enum.Enum):
    """How a channel's credential stands, for the health view (computed, never stored)."""

    VALID = "valid"
    # An issued credential due for renewal (renewal is late: the channel could not renew it yet).
    EXPIRING = "expiring"
    REFUSED = "refused"  # the channel refused it (the channel's state is CREDENTIALS_INVALID)


@dataclass(frozen=True, slots=True)
class IssuedCredentialStatus:
    """The credential a channel issued for itself from its long-term ones (LINE: a short-lived
    channel access token), as stored: when it was issued, is to be renewed, and expires."""

    issue_time: datetime
    renew_time: datetime
    expire_time: datetime


class SyncState(enum.IntEnum):
    """Where a contact sync is. The values are stored; the API maps them."""

    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    SKIPPED = 4


@dataclass(frozen=True, slots=True)
class ContactSyncRun:
    id: int
    channel: str
    state: SyncState
    phase: int  # 1: follower list, 2: profiles
    cursor: str | None
    profile_cursor: str | None
    contacts_synced: int
    contacts_created: int
    contacts_unfollowed: int
    profiles_fetched: int
    error_reason: str
    message: str
    start_time: datetime
    end_time: datetime | None


@dataclass(frozen=True, slots=True)
class ChannelAccount:
    """A connected channel account, as stored (credentials stay sealed in the store)."""

    merchant: str
    id: str
    type: str
    state: ChannelState
    tier: AccountTier
    account_id: str
    display_name: str
    handle: str
    picture_uri: str
    create_time: datetime
    update_time: datetime
    last_sync: ContactSyncRun | None = None
    # None: a long-lived credential the merchant gave (nothing to renew).
    issued_credential: IssuedCredentialStatus | None = None

    def credential_state(self, now: datetime) -> CredentialState:
        if self.state is ChannelState.CREDENTIALS_INVALID:
            return CredentialState.REFUSED
        issued = self.issued_credential
        if issued is not None and now >= issued.renew_time:
            return CredentialState.EXPIRING
        return CredentialState.VALID

    upkeep: Upkeep = Upkeep()  # noqa: RUF009 (frozen: one shared empty value)

    @property
    def webhook_path(self) -> str:
        """Where on the HTTP port the channel posts its webhooks."""
        return f"/webhooks/{self.type}/{self.id}"


@dataclass(frozen=True, slots=True)
class CustomerGroup:
    merchant: str
    id: str
    display_name: str
    description: str
    member_count: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Contact:
    merchant: str
    channel: str
    id: str
    external_id: str
    display_name: str
    picture_uri: str
    follower_state: FollowerState
    last_interaction_time: datetime | None
    opted_out: bool
    customer_id: str | None
    has_conversation: bool
    observe_time: datetime
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ContactImport:
    """One contact as another service knows it, to merge into the stored contact."""

    external_id: str
    display_name: str
    picture_uri: str
    follower_state: FollowerState
    last_interaction_time: datetime | None
    opted_out: bool
    customer_id: str | None
    observe_time: datetime


@dataclass(frozen=True, slots=True)
class ContactFilter:
    opted_out: bool | None = None
    customer_id: str | None = None
    last_interaction_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactChange:
    """The fields an UpdateContact call sets; None leaves a field as it is."""

    opted_out: bool | None = None
    customer_id: str | None = None
    clear_customer: bool = False
