"""A channel to the service with every stub on it, authenticated with a bearer token.

    with connect("127.0.0.1:50051", token="tok...") as client:
        group = client.customer_groups.CreateCustomerGroup(...)

Every call carries `authorization: Bearer <token>` (unless the call sets its own), and failed
calls raise `BroadcasterError` (a `grpc.RpcError` with the status details unpacked): blocking
calls, `.with_call()`, `.future().result()` and server streams alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from broadcaster_client.errors import BroadcasterError
from broadcaster_client.v1 import (
    broadcast_service_pb2_grpc,
    channel_service_pb2_grpc,
    contact_service_pb2_grpc,
    customer_group_service_pb2_grpc,
    event_service_pb2_grpc,
)

__all__ = ["Client", "connect"]

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _Future:
    """A unary call's outcome (or `.future()`) whose failure raises `BroadcasterError`."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._call.result(timeout)
        except grpc.RpcError as e:
            raise BroadcasterError.from_rpc_error(e) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        error = self._call.exception(timeout)
        return BroadcasterError.from_rpc_error(error) if isinstance(error, grpc.RpcError) else error

    def __getattr__(self, name: str) -> Any:  # done(), cancel(), code(), trailing_metadata(), ...
        return getattr(self._call, name)


class _Stream:
    """A server stream whose failure raises `BroadcasterError`; otherwise the stream itself."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> _Stream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as e:
            raise BroadcasterError.from_rpc_error(e) from None

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), trailing_metadata(), ...
        return getattr(self._call, name)


class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, metadata: Metadata) -> None:
        self._metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        own = tuple(details.metadata or ())
        present = {key for key, _ in own}
        added = tuple(item for item in self._metadata if item[0] not in present)
        return _CallDetails(
            details.method,
            details.timeout,
            own + added,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return _Future(continuation(self._details(client_call_details), request))

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return _Stream(continuation(self._details(client_call_details), request))


class Client:
    """Stubs for every service of `broadcaster.v1`, on one channel.

    Attributes:
        channels: ChannelService (connect channels, sync contacts, quota).
        contacts: ContactService.
        customer_groups: CustomerGroupService.
        broadcasts: BroadcastService (drafts, estimates, sending, deliveries).
        events: EventService (Message Center events, WatchEvents stream).
        channel: the underlying `grpc.Channel`, for stubs of your own.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.channels = channel_service_pb2_grpc.ChannelServiceStub(channel)
        self.contacts = contact_service_pb2_grpc.ContactServiceStub(channel)
        self.customer_groups = customer_group_service_pb2_grpc.CustomerGroupServiceStub(channel)
        self.broadcasts = broadcast_service_pb2_grpc.BroadcastServiceStub(channel)
        self.events = event_service_pb2_grpc.EventServiceStub(channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    target: str,
    token: str | None = None,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    metadata: Metadata = (),
    options: Sequence[tuple[str, Any]] = (),
) -> Client:
    """Open a channel to `target` (`host:port`) and return a `Client` on it.

    Args:
        target: the service's gRPC address.
        token: sent as `authorization: Bearer <token>` on every call. Optional only for a
            server with no tokens configured (local development).
        credentials: TLS credentials (`grpc.ssl_channel_credentials()`); plaintext without.
        metadata: more metadata for every call, for example `[("x-request-id", "...")]`.
        options: gRPC channel options.
    """
    extra = tuple(metadata)
    if token is not None:
        extra = (("authorization", f"Bearer {token}"), *extra)
    channel = (
        grpc.secure_channel(target, credentials, options=list(options))
        if credentials is not None
        else grpc.insecure_channel(target, options=list(options))
    )
    return Client(grpc.intercept_channel(channel, _Interceptor(extra)))
