"""EventService over gRPC.

A page holds up to a thousand events that share a few channels, broadcasts and times: their
names and timestamps are built once per page, not once per event (the per-event protobuf
work is what a feed consumer waits on).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.api.broadcasts import message_out
from broadcaster.api.convert_broadcasts import EVENT_KINDS_OUT, counters_out, kinds_in
from broadcaster.api.guard import caller
from broadcaster.api.timestamps import timestamp
from broadcaster.domain.deliveries import CHANNEL_KINDS, Event
from broadcaster.domain.names import BroadcastName, ChannelName
from broadcaster.services.events import Events
from broadcaster.v1 import event_service_pb2 as pb
from broadcaster.v1 import event_service_pb2_grpc as pb_grpc
from broadcaster.v1.broadcast_service_pb2 import BroadcastMessage

Context = grpc.aio.ServicerContext[Any, Any]


# Events built between two turns of the event loop. Building a page of a thousand at once held
# the loop for several milliseconds, in which no send to a channel could go (a channel's rate
# slots are 5 ms apart): a consumer tailing a broadcast held its dispatch under the ceiling.
# (Building them on a thread instead cost the feed a third more CPU, in handing the interpreter
# back and forth.)
AT_ONCE = 200


async def _events_into(
    add: Callable[..., pb.Event], found: Sequence[Event], cursors: Sequence[str]
) -> None:
    for at in range(0, len(found), AT_ONCE):
        if at:
            await asyncio.sleep(0)  # the loop's timers and sends go meanwhile
        events_into(add, found[at : at + AT_ONCE], cursors[at : at + AT_ONCE])


def events_into(
    add: Callable[..., pb.Event], found: Sequence[Event], cursors: Sequence[str]
) -> None:
    """Add each event with its cursor through `add` (a repeated field's `add`, which builds
    the message in place rather than copying one in)."""
    channels: dict[str, tuple[str, str]] = {}  # channel id -> (name, contact name prefix)
    broadcasts: dict[str, str] = {}
    times: dict[datetime, Timestamp] = {}
    # By the identity of a broadcast's bubbles: the store hands every event of a read the same
    # tuple, which `found` keeps alive while this runs.
    bubbles: dict[int, list[BroadcastMessage]] = {}
    kinds = EVENT_KINDS_OUT
    for e, cursor in zip(found, cursors, strict=True):
        channel = channels.get(e.channel)
        if channel is None:
            name = str(ChannelName(e.merchant, e.channel))
            channel = channels[e.channel] = (name, f"{name}/contacts/")
        broadcast = broadcasts.get(e.broadcast)
        if broadcast is None:
            broadcast = broadcasts[e.broadcast] = str(BroadcastName(e.merchant, e.broadcast))
        when = times.get(e.create_time)
        if when is None:
            when = times[e.create_time] = timestamp(e.create_time)
        if e.kind in CHANNEL_KINDS:  # a change of the channel's health: no broadcast
            add(
                cursor=cursor,
                kind=kinds[e.kind],
                channel=channel[0],
                create_time=when,
                failure_reason=e.failure_reason,
            )
        elif e.counters is None:
            messages = bubbles.get(id(e.messages)) if e.messages else None
            if messages is None and e.messages:
                messages = bubbles[id(e.messages)] = [message_out(m) for m in e.messages]
            add(
                cursor=cursor,
                kind=kinds[e.kind],
                channel=channel[0],
                contact=channel[1] + e.contact,
                broadcast=broadcast,
                create_time=when,
                messages=messages,
            )
        else:  # a step of the broadcast's lifecycle: no contact; its counters then
            add(
                cursor=cursor,
                kind=kinds[e.kind],
                channel=channel[0],
                broadcast=broadcast,
                create_time=when,
                counters=counters_out(e.counters),
                failure_reason=e.failure_reason,
            )


class EventServicer(pb_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self._events = events

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        found, cursors, token = await self._events.list_page(
            caller(),
            request.parent,
            request.page_size,
            request.page_token,
            request.after_cursor,
            kinds_in(request.kinds, "kinds"),
            request.broadcast,
        )
        response = pb.ListEventsResponse(next_page_token=token)
        await _events_into(response.events.add, found, cursors)
        return response

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.Event]:
        async for found, cursors in self._events.watch(
            caller(),
            request.parent,
            request.after_cursor,
            kinds_in(request.kinds, "kinds"),
            request.broadcast,
        ):
            batch = pb.WatchEventBatchesResponse()
            await _events_into(batch.events.add, found, cursors)
            for event in batch.events:
                yield event

    async def WatchEventBatches(
        self, request: pb.WatchEventBatchesRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventBatchesResponse]:
        async for found, cursors in self._events.watch(
            caller(),
            request.parent,
            request.after_cursor,
            kinds_in(request.kinds, "kinds"),
            request.broadcast,
        ):
            batch = pb.WatchEventBatchesResponse()
            await _events_into(batch.events.add, found, cursors)
            yield batch
