"""The gRPC server factory: our services, health, reflection, the call guard; returns the port.

The health service (`grpc.health.v1.Health`) answers for each of our services and for the
server as a whole (service ""), with the replica's readiness (services.readiness): SERVING
when ready, NOT_SERVING while the database is away, the schema is not the one this build
expects, or the replica is draining. A Check looks again when the last look is more than a
second old; Watch streams hear of every change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from broadcaster.api.broadcasts import BroadcastServicer
from broadcaster.api.channels import ChannelServicer
from broadcaster.api.contacts import ContactServicer
from broadcaster.api.customer_groups import CustomerGroupServicer
from broadcaster.api.events import EventServicer
from broadcaster.api.guard import CallGuard
from broadcaster.api.limits import CallLimit
from broadcaster.api.request_limits import Limits, method_limits
from broadcaster.channels import ChannelRegistry
from broadcaster.domain.auth import TokenTable
from broadcaster.metrics import Metrics
from broadcaster.services.broadcasts import Broadcasts
from broadcaster.services.channels import Channels
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.contacts import Contacts
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.events import Events
from broadcaster.services.readiness import Readiness
from broadcaster.services.sending import Sending
from broadcaster.services.test_sends import TestSends
from broadcaster.services.upkeep import ChannelUpkeep
from broadcaster.v1 import (
    broadcast_service_pb2,
    channel_service_pb2,
    contact_service_pb2,
    customer_group_service_pb2,
    event_service_pb2,
)
from broadcaster.v1 import broadcast_service_pb2_grpc as broadcast_grpc
from broadcaster.v1 import channel_service_pb2_grpc as channel_grpc
from broadcaster.v1 import contact_service_pb2_grpc as contact_grpc
from broadcaster.v1 import customer_group_service_pb2_grpc as group_grpc
from broadcaster.v1 import event_service_pb2_grpc as event_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    broadcast_service_pb2.DESCRIPTOR.services_by_name["BroadcastService"].full_name,
    channel_service_pb2.DESCRIPTOR.services_by_name["ChannelService"].full_name,
    customer_group_service_pb2.DESCRIPTOR.services_by_name["CustomerGroupService"].full_name,
    contact_service_pb2.DESCRIPTOR.services_by_name["ContactService"].full_name,
)
# Load balancers' health checks and discovery are not traced: many, and they tell nothing.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_SEND = 64 * 1024 * 1024  # answers: a page of 1,000 contacts, 10,000 merged contacts


@dataclass(frozen=True, slots=True)
class Services:
    customer_groups: CustomerGroups
    contacts: Contacts
    channels: Channels
    contact_sync: ContactSyncer
    upkeep: ChannelUpkeep
    broadcasts: Broadcasts
    sending: Sending
    test_sends: TestSends
    events: Events
    registry: ChannelRegistry


class _Health(health.aio.HealthServicer):
    """The standard health service, whose Check first brings readiness up to date."""

    def __init__(self, readiness: Readiness | None) -> None:
        super().__init__()
        self._readiness = readiness

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        if self._readiness is not None:
            await self._readiness.check()  # tells `serving` of a change
        return await super().Check(request, context)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def serving(self, ready: bool) -> None:
        """Every service (and the server as a whole) SERVING, or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*SERVICE_NAMES, ""):
            await self.health.set(name, status)

    async def stop(self, grace: float | None = 10.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def limits_for(registry: ChannelRegistry) -> Limits:
    """Each method's request limit, for the channel types installed (their bubbles and
    credential fields)."""
    kinds = [registry.get(name) for name in registry.types()]
    return Limits(
        method_limits(
            max((k.capabilities.max_messages for k in kinds), default=1),
            max((len(k.credential_fields) for k in kinds), default=1),
        )
    )


def _traced(details: grpc.HandlerCallDetails) -> bool:
    return not details.method.startswith(_UNTRACED_PREFIXES)


def _tracing_interceptor() -> grpc.aio.ServerInterceptor:
    """OpenTelemetry's gRPC server interceptor: a SERVER span per call, named for its method,
    with its status code, as a child of the caller's span when its metadata carries one (the
    propagators of OTEL_PROPAGATORS, W3C trace context by default)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        filter_=_traced
    )
    return interceptor


async def start_server(
    services: Services,
    tokens: TokenTable,
    host: str,
    port: int,
    metrics: Metrics,
    *,
    tls: tuple[bytes, bytes, bytes | None] | None = None,
    max_calls: int = 1000,
    readiness: Readiness | None = None,
    traced: bool = False,
) -> RunningServer:
    """Start serving on host:port (port 0 picks a free one) and return the bound port. RPCs are
    counted in `metrics`. Without tokens every caller acts for every merchant: the configuration
    allows that on a loopback address only.

    `tls`: (certificate chain, private key, client CA or None) in PEM, to serve TLS only; with
    a client CA every caller must present a certificate it signed. `max_calls`: unary calls in
    progress at once, beyond which calls are refused with RESOURCE_EXHAUSTED `TOO_MANY_CALLS`.
    `traced`: a span for every call (but health checks and reflection), by the first of the
    interceptors so that calls the guard or the cap refuse have theirs too, continuing the
    caller's trace (W3C `traceparent` and `tracestate` metadata); the process's tracer
    provider must be installed (broadcaster.tracing).
    `readiness`: what the health service answers (without it, SERVING while the server runs)."""
    if tokens.empty:
        log.warning(
            "NO AUTH TOKENS CONFIGURED: every local caller acts for every merchant. "
            "Set BROADCASTER_AUTH_TOKENS before exposing this server."
        )
    request_limits = limits_for(services.registry)
    interceptors: list[grpc.aio.ServerInterceptor] = [
        CallGuard(tokens, metrics, request_limits),
        CallLimit(max_calls),
    ]
    if traced:
        interceptors.insert(0, _tracing_interceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", request_limits.largest),
            ("grpc.max_send_message_length", MAX_SEND),
        ],
    )
    group_grpc.add_CustomerGroupServiceServicer_to_server(
        CustomerGroupServicer(services.customer_groups), server
    )
    contact_grpc.add_ContactServiceServicer_to_server(ContactServicer(services.contacts), server)
    channel_grpc.add_ChannelServiceServicer_to_server(
        ChannelServicer(
            services.channels, services.contact_sync, services.registry, services.upkeep
        ),
        server,
    )
    broadcast_grpc.add_BroadcastServiceServicer_to_server(
        BroadcastServicer(services.broadcasts, services.sending, services.test_sends), server
    )
    event_grpc.add_EventServiceServicer_to_server(EventServicer(services.events), server)
    health_servicer = _Health(readiness)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        cert_chain, private_key, client_ca = tls
        credentials = grpc.ssl_server_credentials(
            [(private_key, cert_chain)],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        bound = server.add_secure_port(address, credentials)
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC listening on %s:%d%s", host, bound, " (TLS)" if tls else "")
    return RunningServer(server=server, port=bound, health=health_servicer)
