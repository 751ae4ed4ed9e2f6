"""BroadcastService over gRPC: adapts protos to the application service."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import empty_pb2, struct_pb2

from broadcaster.api.convert_broadcasts import (
    OUTCOMES_OUT,
    STATES_OUT,
    TEST_OUTCOMES_OUT,
    WINDOWS_OUT,
    counters_out,
    limit_in,
    limit_out,
    outcome_in,
    state_in,
    statistics_out,
    summary_out,
    window_in,
)
from broadcaster.api.guard import caller
from broadcaster.api.timestamps import optional_datetime, timestamp
from broadcaster.domain.audience import Audience
from broadcaster.domain.broadcasts import Broadcast, Estimate, target_summary
from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.messages import (
    AudioMessage,
    ChannelCheck,
    ChannelNativeMessage,
    ImageMessage,
    Message,
    StickerMessage,
    TextEmoji,
    TextMessage,
    VideoMessage,
)
from broadcaster.domain.names import BroadcastName, ChannelName, ContactName, CustomerGroupName
from broadcaster.domain.test_sends import TestSend
from broadcaster.services.broadcasts import Broadcasts, DraftInput, ListQuery
from broadcaster.services.sending import Sending
from broadcaster.services.test_sends import TestSends, test_send_name
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class _NotFinite(ValueError):
    """A Struct number that JSON cannot carry (NaN or an infinity)."""


def _json_value(v: struct_pb2.Value) -> Any:
    """A Struct value as JSON data. Struct holds every number as a double: whole numbers become
    ints again (channels' formats want `1040`, not `1040.0`)."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        if not math.isfinite(n):
            raise _NotFinite
        return int(n) if n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return _json_object(v.struct_value)
    if kind == "list_value":
        return [_json_value(item) for item in v.list_value.values]
    return None


def _json_object(s: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in s.fields.items()}


def _message_in(m: pb.BroadcastMessage) -> Message | None:
    kind = m.WhichOneof("content")
    if kind == "text":
        emojis = tuple(TextEmoji(e.index, e.product_id, e.emoji_id) for e in m.text.emojis)
        return TextMessage(m.text.text, emojis)
    if kind == "image":
        return ImageMessage(m.image.original_content_uri, m.image.preview_image_uri)
    if kind == "sticker":
        return StickerMessage(m.sticker.package_id, m.sticker.sticker_id)
    if kind == "video":
        v = m.video
        return VideoMessage(v.original_content_uri, v.preview_image_uri, v.tracking_id)
    if kind == "audio":
        return AudioMessage(m.audio.original_content_uri, m.audio.duration_ms)
    if kind == "channel_native":
        return ChannelNativeMessage.of(_json_object(m.channel_native))
    return None


def message_out(m: Message) -> pb.BroadcastMessage:
    match m:
        case TextMessage(text, emojis):
            return pb.BroadcastMessage(
                text=pb.TextContent(
                    text=text,
                    emojis=[
                        pb.TextEmoji(index=e.index, product_id=e.product_id, emoji_id=e.emoji_id)
                        for e in emojis
                    ],
                )
            )
        case ImageMessage(original, preview):
            return pb.BroadcastMessage(
                image=pb.ImageContent(original_content_uri=original, preview_image_uri=preview)
            )
        case StickerMessage(package, sticker):
            return pb.BroadcastMessage(
                sticker=pb.StickerContent(package_id=package, sticker_id=sticker)
            )
        case VideoMessage(original, preview, tracking):
            return pb.BroadcastMessage(
                video=pb.VideoContent(
                    original_content_uri=original, preview_image_uri=preview, tracking_id=tracking
                )
            )
        case AudioMessage(original, duration):
            return pb.BroadcastMessage(
                audio=pb.AudioContent(original_content_uri=original, duration_ms=duration)
            )
        case ChannelNativeMessage():
            out = pb.BroadcastMessage()
            out.channel_native.update(m.data())
            return out
    raise TypeError(f"no API form for {type(m).__name__}")


def _messages_in(b: pb.Broadcast) -> tuple[Message | None, ...]:
    out: list[Message | None] = []
    for i, m in enumerate(b.messages):
        try:
            out.append(_message_in(m))
        except _NotFinite:
            where = f"broadcast.messages[{i}].channel_native"
            raise InvalidArgument(
                [FieldViolation(where, "numbers must be finite (no NaN or Infinity)")]
            ) from None
    return tuple(out)


def draft_in(b: pb.Broadcast) -> DraftInput:
    return DraftInput(
        display_name=b.display_name,
        channel=b.channel,
        window=window_in(b.audience.last_interaction),
        customer_groups=tuple(b.audience.customer_groups),
        messages=_messages_in(b),
        notification_disabled=b.notification_disabled,
    )


def audience_out(merchant: str, a: Audience) -> pb.Audience:
    groups = [str(CustomerGroupName(merchant, a.customer_group))] if a.customer_group else []
    return pb.Audience(
        last_interaction=WINDOWS_OUT[a.window],
        customer_groups=groups,
    )


MESSAGE_CHECKS_OUT = {
    ChannelCheck.NOT_CHECKED: pb.AudienceEstimate.MESSAGE_CHECK_UNSPECIFIED,
    ChannelCheck.ACCEPTED: pb.AudienceEstimate.MESSAGES_ACCEPTED,
    ChannelCheck.UNAVAILABLE: pb.AudienceEstimate.CHECK_UNAVAILABLE,
    ChannelCheck.REFUSED: pb.AudienceEstimate.MESSAGES_REFUSED,
}


def estimate_out(e: Estimate) -> pb.AudienceEstimate:
    return pb.AudienceEstimate(
        matched=e.matched,
        opted_out=e.opted_out,
        unreachable=e.unreachable,
        expected_recipients=e.expected_recipients,
        quota_limited=e.quota_limited,
        quota_remaining=e.quota_remaining or 0,
        exceeds_quota=e.exceeds_quota,
        eligible=e.eligible,
        ineligible_reason=e.ineligible_reason,
        ineligible_message=e.ineligible_message,
        estimate_time=timestamp(e.estimate_time),
        capped_recipients=e.capped_recipients,
        left_out_by_limit=e.left_out_by_limit,
        followers_complete=e.followers_complete,
        followers_sync_time=None
        if e.followers_sync_time is None
        else timestamp(e.followers_sync_time),
    )


class _Rendered:
    """Encoded Broadcast messages, by the broadcast they were made from: list pages re-read
    mostly unchanged broadcasts, and parsing cached bytes costs a fraction of building the
    message again.

    Broadcasts are frozen, and the store hands out one object per unchanged row, so entries are
    found by identity: hashing every field of a broadcast costs more than parsing its bytes. An
    entry holds its broadcast, so no other object can take its id while the entry lives; any
    change to a broadcast is another object, a miss."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[int, tuple[Broadcast, bytes, bytes]] = {}

    def encoded(self, b: Broadcast) -> tuple[Broadcast, bytes, bytes]:
        """(b, the Broadcast's encoding, the encoding of a ListBroadcastsResponse holding it)."""
        found = self._items.get(id(b))
        if found is not None and found[0] is b:
            return found
        message = _build(b)
        made = (
            b,
            message.SerializeToString(),
            pb.ListBroadcastsResponse(broadcasts=[message]).SerializeToString(),
        )
        if len(self._items) >= self._size:  # oldest first: dicts keep insertion order
            del self._items[next(iter(self._items))]
        self._items[id(b)] = made
        return made


_rendered = _Rendered(10_000)


def broadcast_out(b: Broadcast) -> pb.Broadcast:
    return pb.Broadcast.FromString(_rendered.encoded(b)[1])


def list_out(items: list[Broadcast], next_page_token: str) -> pb.ListBroadcastsResponse:
    """A page in one parse: encoded messages concatenated parse as their merge, which appends
    repeated fields, so the page is its broadcasts' one-item pages end to end."""
    page = b"".join([_rendered.encoded(b)[2] for b in items])
    response = pb.ListBroadcastsResponse.FromString(page)
    response.next_page_token = next_page_token
    return response


def _build(b: Broadcast) -> pb.Broadcast:
    out = pb.Broadcast(
        name=str(BroadcastName(b.merchant, b.id)),
        display_name=b.display_name,
        channel=str(ChannelName(b.merchant, b.channel)),
        audience=audience_out(b.merchant, b.audience),
        messages=[message_out(m) for m in b.messages],
        notification_disabled=b.notification_disabled,
        previews=b.previews,
        state=STATES_OUT[b.state],
        target_summary=target_summary(b.audience, b.group_name, resend=bool(b.resend_of)),
        counters=counters_out(b.counters),
        failure_reason=b.failure_reason,
        copied_from=str(BroadcastName(b.merchant, b.copied_from)) if b.copied_from else "",
        resend_of=str(BroadcastName(b.merchant, b.resend_of)) if b.resend_of else "",
        create_time=timestamp(b.create_time),
        update_time=timestamp(b.update_time),
        statistics_summary=summary_out(b.statistics),
    )
    if b.send_estimate is not None:
        out.send_estimate.CopyFrom(estimate_out(b.send_estimate))
    if b.send_time is not None:
        out.send_time.CopyFrom(timestamp(b.send_time))
    if b.complete_time is not None:
        out.complete_time.CopyFrom(timestamp(b.complete_time))
    if b.recipient_limit is not None:
        out.recipient_limit.CopyFrom(limit_out(b.recipient_limit))
    if b.schedule_time is not None:
        out.schedule_time.CopyFrom(timestamp(b.schedule_time))
    return out


STATISTICS = "/statistics"


def statistics_of(name: str) -> str:
    """The broadcast a statistics singleton's name names."""
    if not name.endswith(STATISTICS):
        raise InvalidArgument(
            [
                FieldViolation(
                    "name", "must be merchants/{merchant}/broadcasts/{broadcast}/statistics"
                )
            ]
        )
    return name.removesuffix(STATISTICS)


def test_send_out(t: TestSend) -> pb.TestSend:
    return pb.TestSend(
        name=test_send_name(t),
        recipients=[
            pb.TestSendRecipient(
                contact=str(ContactName(t.merchant, t.channel, r.contact)),
                outcome=TEST_OUTCOMES_OUT[r.outcome],
                reason=r.reason,
            )
            for r in t.recipients
        ],
        create_time=timestamp(t.create_time),
    )


class BroadcastServicer(pb_grpc.BroadcastServiceServicer):
    def __init__(self, broadcasts: Broadcasts, sending: Sending, test_sends: TestSends) -> None:
        self._broadcasts = broadcasts
        self._sending = sending
        self._test_sends = test_sends

    async def CreateBroadcast(
        self, request: pb.CreateBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        made = await self._broadcasts.create(
            caller(), request.parent, draft_in(request.broadcast), request.request_id
        )
        return broadcast_out(made)

    async def GetBroadcast(self, request: pb.GetBroadcastRequest, context: Context) -> pb.Broadcast:
        return broadcast_out(await self._broadcasts.get(caller(), request.name))

    async def ListBroadcasts(
        self, request: pb.ListBroadcastsRequest, context: Context
    ) -> pb.ListBroadcastsResponse:
        found, token = await self._broadcasts.list_page(
            caller(),
            request.parent,
            request.page_size,
            request.page_token,
            ListQuery(
                contains=request.display_name_contains,
                state=state_in(request.state, "state"),
                channel=request.channel,
                channel_type=request.channel_type,
                sent_after=optional_datetime(request, "send_time_after", "send_time_after"),
                sent_before=optional_datetime(request, "send_time_before", "send_time_before"),
                order_by=request.order_by,
            ),
        )
        return list_out(found, token)

    async def UpdateBroadcast(
        self, request: pb.UpdateBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        updated = await self._broadcasts.update(
            caller(),
            request.broadcast.name,
            list(request.update_mask.paths),
            draft_in(request.broadcast),
        )
        return broadcast_out(updated)

    async def DeleteBroadcast(
        self, request: pb.DeleteBroadcastRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._broadcasts.delete(caller(), request.name)
        return empty_pb2.Empty()

    async def CopyBroadcast(
        self, request: pb.CopyBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        return broadcast_out(
            await self._broadcasts.copy(
                caller(), request.name, request.request_id, request.unsent_only
            )
        )

    async def EstimateAudience(
        self, request: pb.EstimateAudienceRequest, context: Context
    ) -> pb.AudienceEstimate:
        estimate = await self._broadcasts.estimate(
            caller(),
            request.parent,
            request.name,
            request.channel,
            window_in(request.audience.last_interaction),
            tuple(request.audience.customer_groups),
            inline=bool(request.channel) or request.HasField("audience"),
            limit=limit_in(request),
        )
        out = estimate_out(estimate)
        if request.name:  # a draft: its messages, as the channel checks them now
            check = await self._broadcasts.check_messages(caller(), request.name)
            out.message_check = MESSAGE_CHECKS_OUT[check.check]
            out.message_check_detail = check.detail
        return out

    async def SendBroadcast(
        self, request: pb.SendBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        sent = await self._sending.send(
            caller(), request.name, request.request_id, limit_in(request)
        )
        return broadcast_out(sent)

    async def CancelBroadcast(
        self, request: pb.CancelBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        return broadcast_out(await self._sending.cancel(caller(), request.name))

    async def ScheduleBroadcast(
        self, request: pb.ScheduleBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        when = optional_datetime(request, "schedule_time", "schedule_time")
        scheduled = await self._sending.schedule(
            caller(), request.name, when, request.request_id, limit_in(request)
        )
        return broadcast_out(scheduled)

    async def UnscheduleBroadcast(
        self, request: pb.UnscheduleBroadcastRequest, context: Context
    ) -> pb.Broadcast:
        draft = await self._sending.unschedule(caller(), request.name, request.request_id)
        return broadcast_out(draft)

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: Context
    ) -> pb.ListDeliveriesResponse:
        outcome = outcome_in(request.outcome, "outcome")
        broadcast, found, token = await self._sending.deliveries(
            caller(), request.parent, request.page_size, request.page_token, outcome
        )
        response = pb.ListDeliveriesResponse(next_page_token=token)
        for d in found:
            response.deliveries.add(
                name=f"{request.parent}/deliveries/{d.seq}",
                contact=str(ContactName(broadcast.merchant, broadcast.channel, d.contact)),
                external_id=d.external_id,
                outcome=OUTCOMES_OUT[d.outcome],
                reason=d.reason,
                request_id=d.request_id,
            )
        return response

    async def SendTestBroadcast(
        self, request: pb.SendTestBroadcastRequest, context: Context
    ) -> pb.TestSend:
        made = await self._test_sends.send(
            caller(), request.name, list(request.contacts), request.request_id
        )
        return test_send_out(made)

    async def GetBroadcastStatistics(
        self, request: pb.GetBroadcastStatisticsRequest, context: Context
    ) -> pb.BroadcastStatistics:
        broadcast = statistics_of(request.name)
        found = await self._broadcasts.statistics(caller(), broadcast)
        return statistics_out(f"{broadcast}{STATISTICS}", found)

    async def ListTestSends(
        self, request: pb.ListTestSendsRequest, context: Context
    ) -> pb.ListTestSendsResponse:
        found, token = await self._test_sends.list_page(
            caller(), request.parent, request.page_size, request.page_token
        )
        return pb.ListTestSendsResponse(
            test_sends=[test_send_out(t) for t in found], next_page_token=token
        )
