"""Rich errors: a failed call's `google.rpc.Status` details, unpacked into one exception.

The service answers every failure with a `google.rpc.Status` in the `grpc-status-details-bin`
trailer: an `ErrorInfo` (a stable `reason`, domain `broadcaster`, `metadata`), plus `BadRequest`
field violations for bad input, `ResourceInfo` for a missing resource, `PreconditionFailure` and
`QuotaFailure` for unmet preconditions, `RetryInfo` for a failure that may pass if the call is
made again later. `BroadcasterError` exposes them as attributes; branch on `reason`, never on
the message.

A `Client` raises `BroadcasterError` itself; with stubs of your own, convert::

    try:
        stub.GetBroadcast(request, metadata=...)
    except grpc.RpcError as e:
        error = BroadcasterError.from_rpc_error(e)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = ["DOMAIN", "BroadcasterError"]

DOMAIN = "broadcaster"
_M = TypeVar("_M", bound=Message)

FieldViolation = error_details_pb2.BadRequest.FieldViolation
PreconditionViolation = error_details_pb2.PreconditionFailure.Violation
QuotaViolation = error_details_pb2.QuotaFailure.Violation

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.QuotaFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.RequestInfo,
)


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    if not isinstance(error, grpc.Call):
        return None
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except ValueError:  # details that contradict the call's own code or message
        return None
    return status


def _unpack(status: status_pb2.Status | None) -> list[Message]:
    unpacked: list[Message] = []
    for packed in status.details if status is not None else ():
        for kind in _DETAIL_TYPES:
            if packed.TypeName() == kind.DESCRIPTOR.full_name:
                detail = kind()
                packed.Unpack(detail)
                unpacked.append(detail)
                break
    return unpacked


class BroadcasterError(grpc.RpcError, grpc.Call):
    """A failed call, with its status details unpacked.

    It is still a `grpc.RpcError` (and a completed `grpc.Call`), so code that catches
    `grpc.RpcError` or calls `.code()` and `.details()` keeps working.

    Attributes:
        message: the status message, for people (do not parse it).
        reason: `ErrorInfo.reason`, stable UPPER_SNAKE (`BROADCAST_NOT_FOUND`); empty when the
            failure did not come from the service (a deadline, a connection failure).
        domain: `ErrorInfo.domain` (`broadcaster`).
        metadata: `ErrorInfo.metadata` (for example `channel` for `CHANNEL_ALREADY_CONNECTED`).
        field_violations: `BadRequest.field_violations`; each has `.field` (a path such as
            `broadcast.messages[2].text`), `.description` and `.reason`.
        precondition_violations: `PreconditionFailure.violations` (`.type`, `.subject`,
            `.description`).
        quota_violations: `QuotaFailure.violations` (`.subject`, `.description`).
        resource_info: `ResourceInfo` of a missing resource, or None.
        retry_delay: `RetryInfo.retry_delay` in seconds: the least wait the service advises
            before making the call again (`DATABASE_UNAVAILABLE`, `CHANNEL_UNAVAILABLE`,
            `TOO_MANY_CALLS`); None when it advises none.
        status_details: every detail message, unpacked (`.details()` is the grpc message).
        status: the whole `google.rpc.Status`, or None when the call carried none.
    """

    def __init__(self, error: grpc.RpcError) -> None:
        self.error = error
        self.status = _status_of(error)
        self.status_details = _unpack(self.status)
        info = self._first(error_details_pb2.ErrorInfo)
        self.reason: str = info.reason if info is not None else ""
        self.domain: str = info.domain if info is not None else ""
        self.metadata: Mapping[str, str] = dict(info.metadata) if info is not None else {}
        bad = self._first(error_details_pb2.BadRequest)
        self.field_violations: list[FieldViolation] = (
            list(bad.field_violations) if bad is not None else []
        )
        precondition = self._first(error_details_pb2.PreconditionFailure)
        self.precondition_violations: list[PreconditionViolation] = (
            list(precondition.violations) if precondition is not None else []
        )
        quota = self._first(error_details_pb2.QuotaFailure)
        self.quota_violations: list[QuotaViolation] = (
            list(quota.violations) if quota is not None else []
        )
        self.resource_info = self._first(error_details_pb2.ResourceInfo)
        retry = self._first(error_details_pb2.RetryInfo)
        self.retry_delay: float | None = (
            retry.retry_delay.ToNanoseconds() / 1e9 if retry is not None else None
        )
        text = self.status.message if self.status is not None else error.details()
        self.message: str = text or ""
        super().__init__(self.message)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> BroadcasterError:
        """The rich view of a failed call (returns `error` itself if it is one already)."""
        return error if isinstance(error, BroadcasterError) else cls(error)

    def _first(self, kind: type[_M]) -> _M | None:
        return next((d for d in self.status_details if isinstance(d, kind)), None)

    @property
    def fields(self) -> list[str]:
        """The paths of the fields named in `field_violations`."""
        return [v.field for v in self.field_violations]

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code().name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return f"BroadcasterError({self})"

    # grpc.Call: the call is over; answer from the original error.

    def code(self) -> grpc.StatusCode:
        return self.error.code()

    def details(self) -> str:
        return self.error.details() or ""

    def initial_metadata(self) -> Any:
        return self.error.initial_metadata() if isinstance(self.error, grpc.Call) else ()

    def trailing_metadata(self) -> Any:
        return self.error.trailing_metadata()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def cancel(self) -> bool:
        return False
