"""EventService over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from broadcaster.api.convert_broadcasts import EVENT_KINDS_OUT
from broadcaster.api.guard import caller
from broadcaster.api.timestamps import timestamp
from broadcaster.domain.deliveries import Event
from broadcaster.domain.names import BroadcastName, ChannelName, ContactName
from broadcaster.services.events import Events, encode_cursor
from broadcaster.v1 import event_service_pb2 as pb
from broadcaster.v1 import event_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def event_out(e: Event) -> pb.Event:
    return pb.Event(
        cursor=encode_cursor(e.position),
        kind=EVENT_KINDS_OUT[e.kind],
        channel=str(ChannelName(e.merchant, e.channel)),
        contact=str(ContactName(e.merchant, e.channel, e.contact)),
        broadcast=str(BroadcastName(e.merchant, e.broadcast)),
        create_time=timestamp(e.create_time),
    )


class EventServicer(pb_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self._events = events

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        found, token = await self._events.list_page(
            caller(), request.parent, request.page_size, request.page_token, request.after_cursor
        )
        return pb.ListEventsResponse(events=[event_out(e) for e in found], next_page_token=token)

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.Event]:
        async for event in self._events.watch(caller(), request.parent, request.after_cursor):
            yield event_out(event)
