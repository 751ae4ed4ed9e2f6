"""Domain errors. Each carries a stable reason from `Reason`; the API layer maps them to statuses.

A reason never changes meaning once published: callers branch on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from broadcaster.domain.reasons import Reason

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: `field` is its path (`customer_group.display_name`)."""

    field: str
    description: str
    reason: str = Reason.INVALID_FIELD


@dataclass(frozen=True, slots=True)
class PreconditionViolation:
    """One unmet precondition: `type` is a category, `subject` what it is about."""

    type: str
    subject: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """A quota the request would exceed: `subject` is whose quota it is."""

    subject: str
    description: str


class DomainError(Exception):
    """Base of every error the product raises on purpose. `retry_after`: for a failure that may
    pass if the same call is made again later (Unavailable, some ResourceExhausted), the least
    wait worth making, in seconds (the caller's own backoff may wait longer); None otherwise."""

    reason: str = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        **metadata: str,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.retry_after = retry_after
        self.metadata: dict[str, str] = metadata


class InvalidArgument(DomainError):
    """The request itself is malformed; each bad field is named."""

    reason: str = Reason.INVALID_ARGUMENT

    def __init__(
        self,
        violations: list[FieldViolation],
        *,
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.violations = list(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or f"Invalid request: {summary}", reason=reason)


class NotFound(DomainError):
    """The named resource does not exist, or belongs to a merchant the caller may not act for."""

    def __init__(self, resource_type: str, resource_name: str, *, reason: str) -> None:
        super().__init__(f"{resource_type} {resource_name!r} not found", reason=reason)
        self.resource_type = resource_type
        self.resource_name = resource_name


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the request."""

    reason: str = Reason.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        violations: list[PreconditionViolation] | None = None,
        quota: list[QuotaViolation] | None = None,
        **metadata: str,
    ) -> None:
        # Waiting alone does not meet a precondition: no retry_after.
        super().__init__(message, reason=reason, retry_after=None, **metadata)
        self.violations = list(violations or [])
        self.quota = list(quota or [])


class AlreadyExists(DomainError):
    """What the request would create exists already."""

    reason: str = Reason.ALREADY_EXISTS


class Unavailable(DomainError):
    """A dependency (the channel's API, the database) cannot be reached now; retrying later
    may work (after `retry_after`, when given)."""

    reason: str = Reason.UNAVAILABLE


class ResourceExhausted(DomainError):
    """The request asks for more than one call may (a request too large), or the server or a
    per-caller limit (calls in progress, open streams) is at capacity; the reason says which.
    `quota` names the limit reached, when there is one to name; `retry_after` (seconds) says
    that the same call may pass after that wait, when it may (not for a request too large)."""

    reason: str = Reason.RESOURCE_EXHAUSTED

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        quota: list[QuotaViolation] | None = None,
        retry_after: float | None = None,
        **metadata: str,
    ) -> None:
        super().__init__(message, reason=reason, retry_after=retry_after, **metadata)
        self.quota = list(quota or [])


class Unauthenticated(DomainError):
    """No credentials, or credentials the server does not know."""

    reason: str = Reason.UNAUTHENTICATED


@dataclass(slots=True)
class Violations:
    """Collects field violations, then raises them together."""

    items: list[FieldViolation] = field(default_factory=list)
    # The reason of the error raised; a specific one (INVALID_PAGE_TOKEN) wins over the default.
    reason: str | None = None

    def add(self, field_path: str, description: str, reason: str = Reason.INVALID_FIELD) -> None:
        self.items.append(FieldViolation(field_path, description, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items, reason=self.reason)


def collect(v: Violations, parse: Callable[[], T]) -> T | None:
    """Run `parse`; if it raises InvalidArgument, add its violations to `v` and return None."""
    try:
        return parse()
    except InvalidArgument as e:
        v.items.extend(e.violations)
        if e.reason != InvalidArgument.reason and v.reason is None:
            v.reason = e.reason
        return None
