"""A channel's health: what it needs from the merchant or the operator, worked out from what the
service last saw of it (no call to the channel).

Each input is a field of `Upkeep` (or the channel's own state); each check (`CHECKS`) turns its
inputs into at most one `Issue`. A channel with no issue is healthy; one with any needs
attention. Another input (for example a credential that will soon expire) is one more field
and one more check, and one more `Issue` member: nothing else changes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta


class WebhookState(enum.IntEnum):
    """Where the channel's webhook stands. The values are stored; the API maps them."""

    UNKNOWN = 0  # connected before the service set webhooks up
    MANUAL = 1  # the service does not set it: the merchant sets it by hand
    SET = 2  # set through the channel, not verified yet
    VERIFIED = 3  # set, and the channel's test reached the service
    FAILING = 4  # the channel could not set it, or its test did not reach the service


class Issue(enum.IntFlag):
    """Why a channel needs attention. The values are stored (a bit each); the API maps them."""

    CREDENTIALS_REFUSED = 1
    WEBHOOK_FAILING = 2
    FOLLOWER_SYNC_FAILED = 4
    FOLLOWERS_STALE = 8
    QUOTA_EXHAUSTED = 16
    CREDENTIALS_EXPIRING = 32


@dataclass(frozen=True, slots=True)
class Upkeep:
    """What the service keeps of a channel's upkeep, as stored."""

    next_sync_time: datetime | None = None
    # When a sync last finished reading the whole follower list (None: never).
    followers_sync_time: datetime | None = None
    webhook_state: WebhookState = WebhookState.UNKNOWN
    webhook_endpoint: str = ""
    # The last test's outcome when it failed, or what to set by hand.
    webhook_detail: str = ""
    webhook_test_time: datetime | None = None
    last_event_time: datetime | None = None
    # The monthly quota when last read: limit None is unlimited.
    quota_limit: int | None = None
    quota_used: int | None = None
    quota_time: datetime | None = None
    issues: Issue = Issue(0)  # noqa: RUF009 (an immutable flag value)
    unhealthy_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """Everything a check reads."""

    # The channel refused the stored credentials when last used.
    credentials_refused: bool
    upkeep: Upkeep
    # Whether the latest contact sync failed, and whether the account may list its followers
    # (False once a sync was skipped for that reason).
    sync_failed: bool
    followers_listable: bool
    create_time: datetime
    now: datetime
    # A follower list older than this is stale (None: never; syncs are not automatic).
    stale_after: timedelta | None
    # A credential the channel issues for itself is past its renewal time, not renewed yet.
    credentials_expiring: bool = False


def followers_complete(
    listable: bool, read: datetime | None, now: datetime, stale_after: timedelta | None
) -> bool:
    """Whether every follower is a contact: the account may list its followers, and the whole
    list was read (at `read`) recently enough."""
    fresh = stale_after is None or (read is not None and now - read <= stale_after)
    return listable and read is not None and fresh


def _credentials(i: HealthInputs) -> Issue | None:
    return Issue.CREDENTIALS_REFUSED if i.credentials_refused else None


def _expiring(i: HealthInputs) -> Issue | None:
    if i.credentials_refused:  # refused says more than expiring
        return None
    return Issue.CREDENTIALS_EXPIRING if i.credentials_expiring else None


def _webhook(i: HealthInputs) -> Issue | None:
    return Issue.WEBHOOK_FAILING if i.upkeep.webhook_state == WebhookState.FAILING else None


def _sync_failed(i: HealthInputs) -> Issue | None:
    return Issue.FOLLOWER_SYNC_FAILED if i.sync_failed else None


def _stale(i: HealthInputs) -> Issue | None:
    """A follower list not read whole within the stale period (counted from the connection
    when it never was), while the account may list it."""
    if not i.followers_listable or i.stale_after is None:
        return None
    since = i.upkeep.followers_sync_time or i.create_time
    return Issue.FOLLOWERS_STALE if i.now - since > i.stale_after else None


def _quota(i: HealthInputs) -> Issue | None:
    u = i.upkeep
    if u.quota_limit is None or u.quota_used is None:
        return None
    return Issue.QUOTA_EXHAUSTED if u.quota_used >= u.quota_limit else None


CHECKS: tuple[Callable[[HealthInputs], Issue | None], ...] = (
    _credentials,
    _expiring,
    _webhook,
    _sync_failed,
    _stale,
    _quota,
)


def assess(i: HealthInputs) -> Issue:
    found = Issue(0)
    for check in CHECKS:
        issue = check(i)
        if issue is not None:
            found |= issue
    return found


MESSAGES: dict[Issue, str] = {
    Issue.CREDENTIALS_REFUSED: "The channel refused the stored credentials: connect it again.",
    Issue.WEBHOOK_FAILING: "The channel's webhook does not reach the service (see `webhook`).",
    Issue.FOLLOWER_SYNC_FAILED: "The last contact sync failed (see `last_sync`).",
    Issue.FOLLOWERS_STALE: (
        "The follower list has not been read whole recently: audiences may count too few."
    ),
    Issue.QUOTA_EXHAUSTED: "The monthly message quota is used up: broadcasts are refused.",
    Issue.CREDENTIALS_EXPIRING: (
        "The channel's short-lived credential is past its renewal time and could not be "
        "renewed yet (the channel unreachable); the service keeps trying until it expires."
    ),
}


def issues_of(flags: Issue) -> list[Issue]:
    """Each issue in `flags`, in the order of their values."""
    return [issue for issue in Issue if issue in flags]
