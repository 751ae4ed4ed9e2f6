"""The cap on calls in progress: over it, RESOURCE_EXHAUSTED with a reason; health checks pass."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from broadcaster.api.guard import CallGuard
from broadcaster.api.limits import CallLimit
from broadcaster.domain.auth import TokenTable
from broadcaster.metrics import Metrics

METHOD = "/test.Slow/Call"


async def test_calls_over_the_cap_are_refused_with_a_reason() -> None:
    release, all_in = asyncio.Event(), asyncio.Event()
    started = 0

    async def slow(request: bytes, context: Any) -> bytes:
        nonlocal started
        started += 1
        if started == 3:
            all_in.set()
        await release.wait()
        return request

    server = grpc.aio.server(interceptors=[CallGuard(TokenTable({}), Metrics()), CallLimit(3)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(METHOD)
            held = [asyncio.ensure_future(call(b"x")) for _ in range(3)]
            await all_in.wait()
            try:
                await call(b"y")
                raise AssertionError("a fourth call was let through")
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                status = rpc_status.from_call(e)
                assert status is not None
                info = error_details_pb2.ErrorInfo()
                assert status.details[0].Unpack(info)
                assert info.reason == "TOO_MANY_CALLS" and info.domain == "broadcaster"
            # Health checks answer however busy the server is.
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert (await check).status == health_pb2.HealthCheckResponse.SERVING
            release.set()
            assert await asyncio.gather(*held) == [b"x"] * 3
            # Finished calls free their places.
            assert await call(b"z") == b"z"
    finally:
        await server.stop(None)
