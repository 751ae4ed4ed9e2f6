"""Request limits read from the wire format: item counts before parsing, sizes, bad bytes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.api.request_limits import (
    OFF_LOOP_BYTES,
    SMALL,
    LargeTurns,
    Limit,
    check_and_parse,
    count_field,
    is_large,
    method_limits,
)
from broadcaster.domain.errors import InvalidArgument, ResourceExhausted
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import contact_service_pb2 as cpb

_contacts = st.lists(
    st.builds(cpb.Contact, external_id=st.text(max_size=5), display_name=st.text(max_size=5)),
    max_size=30,
)


@given(contacts=_contacts, parent=st.text(max_size=20))
def test_the_count_matches_the_parser(contacts: list[cpb.Contact], parent: str) -> None:
    raw = cpb.BatchCreateContactsRequest(parent=parent, contacts=contacts).SerializeToString()
    assert count_field(raw, (2,), 1000) == len(contacts)


@given(n=st.integers(0, 50), stop=st.integers(0, 50))
def test_counting_stops_one_past_the_limit(n: int, stop: int) -> None:
    raw = b"\x12\x00" * n
    assert count_field(raw, (2,), stop) == min(n, stop + 1)


@given(parts=st.lists(st.integers(0, 6), min_size=1, max_size=4))
def test_a_nested_field_counts_across_every_occurrence_of_its_parent(parts: list[int]) -> None:
    """The parser merges repeated occurrences of a message field, so the count adds them up."""
    raw = b"".join(
        bpb.CreateBroadcastRequest(
            broadcast=bpb.Broadcast(messages=[bpb.BroadcastMessage()] * k)
        ).SerializeToString()
        for k in parts
    )
    assert len(bpb.CreateBroadcastRequest.FromString(raw).broadcast.messages) == sum(parts)
    assert count_field(raw, (2, 5), 100) == sum(parts)


@given(raw=st.binary(max_size=200))
def test_any_bytes_are_counted_or_refused_cleanly(raw: bytes) -> None:
    limit = Limit(1024, "contacts", (2,), 3, "contacts")
    try:
        check_and_parse("/x.S/M", limit, cpb.BatchCreateContactsRequest.FromString, raw)
    except InvalidArgument as e:
        assert e.reason in ("INVALID_ARGUMENT", "MALFORMED_REQUEST")


def test_too_large_names_its_limit() -> None:
    with pytest.raises(ResourceExhausted) as e:
        check_and_parse("/x.S/Get", Limit(SMALL), bytes, b"x" * (SMALL + 1))
    assert e.value.reason == "REQUEST_TOO_LARGE"
    assert e.value.metadata == {"limit_bytes": str(SMALL), "size_bytes": str(SMALL + 1)}


def test_the_largest_valid_requests_fit_their_limits() -> None:
    limits = method_limits(max_messages=5, max_credentials=2)
    contact = cpb.Contact(
        name="merchants/" + "m" * 64 + "/channels/" + "c" * 64 + "/contacts/" + "k" * 64,
        external_id="😀" * 128,
        display_name="😀" * 256,
        picture_uri="https://" + "p" * 1992,
        customer_id="😀" * 128,
        opted_out=True,
        follower_state=cpb.Contact.BLOCKED,
    )
    contact.last_interaction_time.FromSeconds(253402300799)
    contact.observe_time.FromSeconds(253402300799)
    contact.last_interaction_time.nanos = contact.observe_time.nanos = 999_999_999
    batch = cpb.BatchCreateContactsRequest(
        parent="merchants/" + "m" * 64 + "/channels/" + "c" * 64, contacts=[contact] * 10_000
    )
    limit = limits["/broadcaster.v1.ContactService/BatchCreateContacts"]
    assert batch.ByteSize() <= limit.max_bytes
    text = bpb.BroadcastMessage(text=bpb.TextContent(text="😀" * 5000))
    broadcast = bpb.CreateBroadcastRequest(
        parent="merchants/" + "m" * 64,
        broadcast=bpb.Broadcast(display_name="😀" * 256, messages=[text] * 5),
        request_id="😀" * 128,
    )
    create = limits["/broadcaster.v1.BroadcastService/CreateBroadcast"]
    assert broadcast.ByteSize() <= create.max_bytes


def test_large_means_parsed_off_the_loop_and_within_the_limit() -> None:
    limit = Limit(4 * OFF_LOOP_BYTES)
    assert not is_large(limit, b"x" * OFF_LOOP_BYTES)
    assert is_large(limit, b"x" * (OFF_LOOP_BYTES + 1))
    assert not is_large(limit, b"x" * (4 * OFF_LOOP_BYTES + 1))  # refused unparsed instead
    assert not is_large(limit, cpb.BatchCreateContactsRequest())  # parsed already


async def test_large_requests_take_turns_and_small_ones_never_wait() -> None:
    turns = LargeTurns(at_once=2)
    limit = Limit(4 * OFF_LOOP_BYTES)
    large, small = b"x" * (OFF_LOOP_BYTES + 1), b"x"
    at_once = most = 0
    release = asyncio.Event()

    async def handle(raw: bytes) -> None:
        nonlocal at_once, most
        async with turns.turn(limit, raw):
            at_once += 1
            most = max(most, at_once)
            await release.wait()
            at_once -= 1

    waiting = [asyncio.create_task(handle(large)) for _ in range(5)]
    await asyncio.sleep(0)
    assert (at_once, most) == (2, 2)
    async with turns.turn(limit, small):  # while two large ones hold their turns
        pass
    release.set()
    await asyncio.gather(*waiting)
    assert most == 2
