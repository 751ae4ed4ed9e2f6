"""The one place where errors become gRPC statuses.

Every status carries `google.rpc.ErrorInfo` (reason, domain `broadcaster`, metadata); bad input
adds `BadRequest` field violations, unmet preconditions `PreconditionFailure`, missing resources
`ResourceInfo`, and a failure that may pass if the call is made again later `RetryInfo` (the
least wait worth making).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from broadcaster.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from broadcaster.domain.reasons import Reason

DOMAIN = "broadcaster"
# The status travels in trailers, and peers refuse trailers over 8 KiB: grpc-message is
# percent-encoded (up to 3 bytes per UTF-8 byte) and the details are base64 (4 per 3). So echoed
# input is clipped by UTF-8 size and the violation list is cut to fit.
_MAX_TEXT = 300
_MAX_MESSAGE_BYTES = 600
_MAX_STATUS_BYTES = 3000
log = logging.getLogger(__name__)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODES: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidArgument, int(code_pb2.INVALID_ARGUMENT)),
    (NotFound, int(code_pb2.NOT_FOUND)),
    (FailedPrecondition, int(code_pb2.FAILED_PRECONDITION)),
    (AlreadyExists, int(code_pb2.ALREADY_EXISTS)),
    (Unavailable, int(code_pb2.UNAVAILABLE)),
    (Unauthenticated, int(code_pb2.UNAUTHENTICATED)),
    (ResourceExhausted, int(code_pb2.RESOURCE_EXHAUSTED)),
)


def _code(error: DomainError) -> int:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return int(code_pb2.INTERNAL)


def _clip(text: str, limit: int = _MAX_TEXT) -> str:
    """At most `limit` UTF-8 bytes, cut at a character boundary."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _bad_request(error: InvalidArgument, budget: int) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    for v in error.violations:
        bad.field_violations.add(
            field=_clip(v.field), description=_clip(v.description), reason=v.reason
        )
        if bad.ByteSize() > budget:
            del bad.field_violations[-1]
            break
    return bad


def status_of(error: DomainError) -> status_pb2.Status:
    metadata = {k: _clip(v) for k, v in error.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    details = [_pack(info)]
    message = _clip(error.message, _MAX_MESSAGE_BYTES)
    if isinstance(error, InvalidArgument):
        budget = _MAX_STATUS_BYTES - len(message.encode()) - info.ByteSize()
        details.append(_pack(_bad_request(error, budget)))
    elif isinstance(error, NotFound):
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=error.resource_type,
                    resource_name=_clip(error.resource_name),
                    description=message,
                )
            )
        )
    elif isinstance(error, FailedPrecondition) and error.violations:
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.type, subject=_clip(v.subject), description=_clip(v.description)
                )
                for v in error.violations
            ]
        )
        details.append(_pack(failure))
    if isinstance(error, FailedPrecondition | ResourceExhausted) and error.quota:
        quota = error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=_clip(q.subject), description=_clip(q.description)
                )
                for q in error.quota
            ]
        )
        details.append(_pack(quota))
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=_code(error), message=message, details=details)


def internal_status() -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=Reason.INTERNAL, domain=DOMAIN)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="Internal error; it has been logged.",
        details=[_pack(info)],
    )


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> None:
    """Abort the call with the status for `error` (never returns)."""
    if isinstance(error, DomainError):
        status = status_of(error)
    else:
        log.exception("unexpected error in handler", exc_info=error)
        status = internal_status()
    grpc_status = rpc_status.to_status(status)
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)
