"""Between protobuf messages and domain values. Timestamps from callers are range-checked here,
so an absurd value is a field violation, not an overflow deep inside."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.model import Contact, CustomerGroup, FollowerState
from broadcaster.domain.names import ContactName, CustomerGroupName
from broadcaster.v1 import contact_service_pb2 as contact_pb
from broadcaster.v1 import customer_group_service_pb2 as group_pb

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 3339 range (what google.protobuf.Timestamp allows): 0001-01-01 to 9999-12-31.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def to_datetime(ts: Timestamp, field: str) -> datetime:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument([FieldViolation(field, "is not a valid timestamp")])
    return ts.ToDatetime(tzinfo=UTC)


def optional_datetime(message: object, name: str, field: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return to_datetime(getattr(message, name), field)


def follower_state(value: int, field: str) -> FollowerState:
    try:
        return FollowerState(value)
    except ValueError:
        raise InvalidArgument([FieldViolation(field, f"unknown follower state {value}")]) from None


def customer_group(g: CustomerGroup) -> group_pb.CustomerGroup:
    return group_pb.CustomerGroup(
        name=str(CustomerGroupName(g.merchant, g.id)),
        display_name=g.display_name,
        description=g.description,
        member_count=g.member_count,
        create_time=timestamp(g.create_time),
        update_time=timestamp(g.update_time),
    )


def contact(c: Contact) -> contact_pb.Contact:
    out = contact_pb.Contact(
        name=str(ContactName(c.merchant, c.channel, c.id)),
        external_id=c.external_id,
        display_name=c.display_name,
        picture_uri=c.picture_uri,
        follower_state=contact_pb.Contact.FollowerState.ValueType(int(c.follower_state)),
        opted_out=c.opted_out,
        customer_id=c.customer_id or "",
        has_conversation=c.has_conversation,
        observe_time=timestamp(c.observe_time),
        create_time=timestamp(c.create_time),
        update_time=timestamp(c.update_time),
    )
    if c.last_interaction_time is not None:
        out.last_interaction_time.CopyFrom(timestamp(c.last_interaction_time))
    return out
