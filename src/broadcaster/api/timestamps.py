"""Timestamps between protobuf and domain values. Timestamps from callers are range-checked here,
so an absurd value is a field violation, not an overflow deep inside."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.domain.errors import FieldViolation, InvalidArgument

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 3339 range (what google.protobuf.Timestamp allows): 0001-01-01 to 9999-12-31.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp(value: datetime) -> Timestamp:
    # Plain arithmetic: Timestamp.FromDatetime goes through time tuples and costs five times more,
    # which shows in list responses.
    delta = value - EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def to_datetime(ts: Timestamp, field: str) -> datetime:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument([FieldViolation(field, "is not a valid timestamp")])
    return ts.ToDatetime(tzinfo=UTC)


def optional_datetime(message: Message, name: str, field: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return to_datetime(getattr(message, name), field)
