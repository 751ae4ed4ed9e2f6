"""The translator: every domain error becomes a status with ErrorInfo, and stays small."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2

from broadcaster.api.errors import status_of
from broadcaster.channels import ChannelUnavailable
from broadcaster.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    ResourceExhausted,
    Unavailable,
)
from broadcaster.services.channels import unavailable as channel_unavailable
from broadcaster.store.database import database_unavailable


def _unpack(status, kind):  # type: ignore[no-untyped-def]
    for d in status.details:
        if d.Is(kind.DESCRIPTOR):
            out = kind()
            d.Unpack(out)
            return out
    return None


def test_invalid_argument_has_field_violations() -> None:
    status = status_of(InvalidArgument([FieldViolation("a.b", "bad")]))
    assert status.code == code_pb2.INVALID_ARGUMENT
    info = _unpack(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "broadcaster")
    assert [v.field for v in _unpack(status, error_details_pb2.BadRequest).field_violations] == [
        "a.b"
    ]


def test_huge_violation_lists_are_cut_to_fit_a_trailer() -> None:
    error = InvalidArgument([FieldViolation(f"f{n}", "x" * 5000) for n in range(1000)])
    status = status_of(error)
    assert status.ByteSize() < 6000
    assert len(_unpack(status, error_details_pb2.BadRequest).field_violations) >= 1


def test_not_found_and_precondition() -> None:
    nf = status_of(
        NotFound("contact", "merchants/m/channels/c/contacts/k", reason="CONTACT_NOT_FOUND")
    )
    assert nf.code == code_pb2.NOT_FOUND
    assert _unpack(nf, error_details_pb2.ResourceInfo).resource_type == "contact"
    fp = status_of(
        FailedPrecondition(
            "no", reason="X", violations=[PreconditionViolation("CHANNEL", "c", "connect it")]
        )
    )
    assert fp.code == code_pb2.FAILED_PRECONDITION
    assert _unpack(fp, error_details_pb2.PreconditionFailure).violations[0].subject == "c"


def test_failures_that_may_pass_later_say_how_long_to_wait_and_others_do_not() -> None:
    waits = {
        "DATABASE_UNAVAILABLE": (database_unavailable(), 1.0),
        "CHANNEL_UNAVAILABLE": (channel_unavailable(ChannelUnavailable("timed out")), 5.0),
        "TOO_MANY_CALLS": (
            ResourceExhausted("busy", reason="TOO_MANY_CALLS", retry_after=0.5),
            0.5,
        ),
    }
    for reason, (error, seconds) in waits.items():
        status = status_of(error)
        assert _unpack(status, error_details_pb2.ErrorInfo).reason == reason
        retry = _unpack(status, error_details_pb2.RetryInfo)
        assert retry is not None and retry.retry_delay.ToNanoseconds() == round(seconds * 1e9)
    too_large = status_of(ResourceExhausted("too large", reason="REQUEST_TOO_LARGE"))
    assert too_large.code == code_pb2.RESOURCE_EXHAUSTED
    assert _unpack(too_large, error_details_pb2.RetryInfo) is None  # the same call never passes
    assert _unpack(status_of(Unavailable("down")), error_details_pb2.RetryInfo) is None
