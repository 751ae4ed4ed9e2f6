"""How large a request each method accepts, and decoding a request within those limits.

Each method's limit is the size of its largest valid request, worked out from the domain's
limits (a 10,000-contact BatchCreateContacts with every string at its longest, a broadcast
with the most bubbles a channel takes), so nothing valid is refused and nothing much larger is
ever held or parsed. The server-wide gRPC receive limit is the largest of them.

A request is checked on its raw bytes before it is parsed: its size against its method's
limit, then the number of items in its one repeated top-level field (read from the wire format
without parsing the items), so a flood of tiny items is refused after counting at most one
item past the limit. Large requests are parsed in a worker thread, off the event loop.

Large requests also take turns (`LargeTurns`): at most LARGE_AT_ONCE of them are parsed and
handled at the same time, and the others wait as the raw bytes they arrived in. A handled
10,000-contact batch is some hundred thousand Python objects (items, rows, answers) that live
until it is answered; with twenty of them at once, each full pass of Python's garbage collector
walked millions of objects and held the event loop for 100-250 ms. Raw bytes are one object
the collector does not walk. More at once would not finish sooner either: the work is Python,
and one process runs one thread of Python at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from broadcaster.domain import rules
from broadcaster.domain.errors import FieldViolation, InvalidArgument, ResourceExhausted
from broadcaster.domain.reasons import Reason
from broadcaster.services.channels import MAX_CREDENTIAL
from broadcaster.services.contacts import MAX_IMPORT
from broadcaster.services.customer_groups import MAX_MEMBERS_PER_CALL
from broadcaster.services.offload import give_back_memory, off_loop

# Requests larger than this are parsed in a worker thread: parsing 256 KiB takes about a
# millisecond, so smaller ones cost the event loop less than the hand-off would.
OFF_LOOP_BYTES = 256 * 1024
OFF_LOOP_ITEMS_BYTES = 16 * 1024  # the same for a request whose items are counted first
# Large requests parsed and handled at the same time. One: with two, the database threads
# turning one's 10,000 rows into answers and the worker parsing the other took turns with the
# event loop for the interpreter, and on PostgreSQL the loop waited up to 55-70 ms for its
# turn; one at a time it waited at most ~40 ms, for 10-25 % fewer bulk calls a second.
LARGE_AT_ONCE = 1

# Bytes on the wire. A string field costs its tag, its length (up to 3 bytes below 2 MiB) and
# its UTF-8 bytes: up to 4 per character of text. Resource names and URIs are ASCII (names are
# checked against `[A-Za-z0-9_-]` ids; a URI's other characters are percent-encoded).
_FIELD = 1 + 3
MAX_NAME = 256  # the longest resource name, merchants/…/channels/…/contacts/… with 64-char ids
SMALL = 16 * 1024  # every request without a list or free text of its own: names, paging, masks


def text(chars: int) -> int:
    return _FIELD + 4 * chars


def ascii_text(chars: int) -> int:
    return _FIELD + chars


_TIMESTAMP = _FIELD + 11 + 6  # seconds and nanos, each a tagged varint
CONTACT = (
    ascii_text(MAX_NAME)
    + text(rules.MAX_EXTERNAL_ID)
    + text(rules.MAX_DISPLAY_NAME)
    + ascii_text(rules.MAX_URI)
    + 2 * _TIMESTAMP  # last_interaction_time, observe_time
    + text(rules.MAX_CUSTOMER_ID)
    + 3 * _FIELD  # follower_state, opted_out, one field of room
)
# One bubble: the largest a channel takes. LINE: a flex carousel of up to 50,000 bytes of JSON,
# which as a protobuf Struct (every number a double, every value wrapped) takes up to about
# twice that; the longest text (5,000 UTF-16 units, at most 15,000 UTF-8 bytes) is far less.
BUBBLE = 96 * 1024


@dataclass(frozen=True, slots=True)
class Limit:
    """What one method accepts: at most `max_bytes`, and, when `items` names the request's
    repeated field (`numbers`: its field number, after those of the messages it is in), at
    most `max_items` of them."""

    max_bytes: int
    items: str = ""
    numbers: tuple[int, ...] = ()
    max_items: int = 0
    noun: str = ""  # what an item is, for the error message ("contacts per call")


def method_limits(max_messages: int, max_credentials: int) -> dict[str, Limit]:
    """Every method with more than SMALL to accept, by its full gRPC path. `max_messages` and
    `max_credentials`: the most bubbles and credential fields any registered channel type has."""
    bubbles = max(max_messages, 1)
    broadcast = SMALL + bubbles * BUBBLE
    credentials = max(max_credentials, 1) * (text(64) + text(MAX_CREDENTIAL) + _FIELD)
    members = Limit(
        ascii_text(MAX_NAME) + MAX_MEMBERS_PER_CALL * (text(rules.MAX_CUSTOMER_ID)),
        "customer_ids",
        (2,),
        MAX_MEMBERS_PER_CALL,
        "ids per call",
    )
    groups = "/broadcaster.v1.CustomerGroupService/"
    broadcasts = "/broadcaster.v1.BroadcastService/"
    return {
        "/broadcaster.v1.ContactService/BatchCreateContacts": Limit(
            ascii_text(MAX_NAME) + MAX_IMPORT * (_FIELD + CONTACT),
            "contacts",
            (2,),
            MAX_IMPORT,
            "contacts per call",
        ),
        f"{groups}AddCustomerGroupMembers": members,
        f"{groups}RemoveCustomerGroupMembers": members,
        # Broadcast.messages (5), in CreateBroadcastRequest.broadcast (2) or
        # UpdateBroadcastRequest.broadcast (1). The channel checks its own, lower, limit later.
        f"{broadcasts}CreateBroadcast": Limit(
            broadcast, "broadcast.messages", (2, 5), bubbles, "messages"
        ),
        f"{broadcasts}UpdateBroadcast": Limit(
            broadcast, "broadcast.messages", (1, 5), bubbles, "messages"
        ),
        "/broadcaster.v1.ChannelService/CreateChannel": Limit(SMALL + credentials),
    }


class Limits:
    """The limit of each method (SMALL unless listed)."""

    def __init__(self, by_method: dict[str, Limit]) -> None:
        self._by_method = by_method
        self._small = Limit(SMALL)

    def of(self, method: str) -> Limit:
        return self._by_method.get(method, self._small)

    @property
    def largest(self) -> int:
        """The server-wide receive limit: no method accepts more."""
        return max([SMALL, *(limit.max_bytes for limit in self._by_method.values())])

    def items(self) -> Iterable[tuple[str, Limit]]:
        return self._by_method.items()


def _varint(raw: memoryview, at: int) -> tuple[int, int]:
    """The varint at `at` and the offset after it; IndexError past the end."""
    value = shift = 0
    while True:
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def count_field(raw: bytes | memoryview, numbers: tuple[int, ...], stop_after: int) -> int:
    """How many times the field at path `numbers` occurs in the encoded message `raw`, counting
    no further than `stop_after` + 1. Every occurrence of a message on the path counts (the
    parser merges them). Reads tags and lengths only; a malformed encoding stops the count
    (the parser then reports it)."""
    number, inner = numbers[0], numbers[1:]
    view = memoryview(raw)
    count = at = 0
    end = len(view)
    try:
        while at < end:
            tag, at = _varint(view, at)
            wire = tag & 7
            if wire == 0:
                _, at = _varint(view, at)
            elif wire == 1:
                at += 8
            elif wire == 2:
                size, at = _varint(view, at)
                if tag >> 3 == number and inner:
                    count += count_field(view[at : at + size], inner, stop_after - count)
                at += size
            elif wire == 5:
                at += 4
            else:  # groups are not in proto3
                return count
            if tag >> 3 == number and not inner:
                count += 1
            if count > stop_after:
                return count
    except IndexError:
        pass
    return count


def too_large(method: str, size: int, limit: Limit) -> ResourceExhausted:
    return ResourceExhausted(
        f"The request is {size:,} bytes; {method.rsplit('/', 1)[-1]} accepts at most "
        f"{limit.max_bytes:,} bytes.",
        reason=Reason.REQUEST_TOO_LARGE,
        limit_bytes=str(limit.max_bytes),
        size_bytes=str(size),
    )


def check_and_parse(method: str, limit: Limit, parse: Callable[[bytes], Any], raw: bytes) -> Any:
    """The request `raw` encodes, checked against `limit`; raises ResourceExhausted
    (REQUEST_TOO_LARGE) or InvalidArgument (too many items, MALFORMED_REQUEST)."""
    if len(raw) > limit.max_bytes:
        raise too_large(method, len(raw), limit)
    if limit.items and count_field(raw, limit.numbers, limit.max_items) > limit.max_items:
        raise InvalidArgument(
            [FieldViolation(limit.items, f"must hold at most {limit.max_items:,} {limit.noun}")]
        )
    try:
        return parse(raw)
    except DecodeError:
        raise InvalidArgument(
            [FieldViolation("request", "is not a valid protobuf encoding of the request")],
            reason=Reason.MALFORMED_REQUEST,
        ) from None


def is_large(limit: Limit, raw: Any) -> bool:
    """Whether `raw` is a large request of its method: one parsed off the event loop, and
    handled in turn with the other large ones. Counting items is Python, a few hundred
    nanoseconds a tag: 16 KiB may hold 8,000 of them. Oversized requests are not large: they
    are refused unparsed."""
    if not isinstance(raw, bytes) or len(raw) > limit.max_bytes:
        return False
    return len(raw) > (OFF_LOOP_ITEMS_BYTES if limit.items else OFF_LOOP_BYTES)


class LargeTurns:
    """Turns for large requests: at most `at_once` in progress, the others waiting in order of
    arrival. Small requests never wait."""

    def __init__(self, at_once: int = LARGE_AT_ONCE) -> None:
        self._turns = asyncio.Semaphore(at_once)
        self._in = 0  # large requests holding or waiting for a turn

    def turn(self, limit: Limit, raw: Any) -> AbstractAsyncContextManager[Any]:
        """What to hold while `raw` is parsed and handled."""
        return self._large() if is_large(limit, raw) else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def _large(self) -> AsyncIterator[None]:
        self._in += 1
        try:
            async with self._turns:
                yield
        finally:
            self._in -= 1
            if not self._in:  # the last of a burst: its memory goes back to the system
                give_back_memory()


async def decode(method: str, limit: Limit, parse: Callable[[bytes], Any], raw: Any) -> Any:
    """`raw` checked and parsed: in a worker thread when it is large (`is_large`). `raw` that
    is not bytes was parsed already (a handler called in-process) and is returned."""
    if not isinstance(raw, bytes):
        return raw
    if is_large(limit, raw):
        return await off_loop(check_and_parse, method, limit, parse, raw)
    return check_and_parse(method, limit, parse, raw)
