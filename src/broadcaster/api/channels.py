"""ChannelService over gRPC: adapts protos to the application services."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from broadcaster.api import convert
from broadcaster.api.guard import caller
from broadcaster.channels import Capabilities
from broadcaster.channels.registry import ChannelRegistry, UnknownChannelType
from broadcaster.domain.model import ChannelAccount
from broadcaster.domain.names import ChannelName
from broadcaster.services.channels import Channels
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.upkeep import ChannelUpkeep
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class ChannelServicer(pb_grpc.ChannelServiceServicer):
    def __init__(
        self,
        channels: Channels,
        syncer: ContactSyncer,
        registry: ChannelRegistry,
        upkeep: ChannelUpkeep,
    ) -> None:
        self._channels = channels
        self._syncer = syncer
        self._registry = registry
        self._upkeep = upkeep

    def _caps(self, channel_type: str) -> Capabilities | None:
        try:
            return self._registry.get(channel_type).capabilities
        except UnknownChannelType:  # its plugin was uninstalled since
            return None

    def _out(self, account: ChannelAccount) -> pb.Channel:
        out = convert.channel(account, self._caps(account.type))
        out.webhook_url = self._upkeep.webhook_url(account)
        return out

    async def CreateChannel(self, request: pb.CreateChannelRequest, context: Context) -> pb.Channel:
        c = request.channel
        made = await self._channels.create(
            caller(), request.parent, c.type, dict(c.credentials), request.request_id
        )
        await self._upkeep.connected(made)
        name = str(ChannelName(made.merchant, made.id))
        return self._out(await self._channels.get(caller(), name))

    async def GetChannel(self, request: pb.GetChannelRequest, context: Context) -> pb.Channel:
        return self._out(await self._channels.get(caller(), request.name))

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: Context
    ) -> pb.ListChannelsResponse:
        found, token = await self._channels.list_page(
            caller(),
            request.parent,
            request.page_size,
            request.page_token,
            needs_attention=request.needs_attention,
        )
        return pb.ListChannelsResponse(
            channels=[self._out(a) for a in found], next_page_token=token
        )

    async def DeleteChannel(
        self, request: pb.DeleteChannelRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._channels.delete(caller(), request.name)
        return empty_pb2.Empty()

    async def SyncContacts(
        self, request: pb.SyncContactsRequest, context: Context
    ) -> pb.ContactSync:
        return convert.contact_sync(await self._syncer.start(caller(), request.name))

    async def GetChannelQuota(
        self, request: pb.GetChannelQuotaRequest, context: Context
    ) -> pb.ChannelQuota:
        name, quota = await self._channels.quota(caller(), request.name)
        return convert.quota(name, quota)
