"""The cap on calls in progress: a server interceptor that refuses a call beyond it with
RESOURCE_EXHAUSTED `TOO_MANY_CALLS`, before the handler runs, so a flood of callers cannot
queue unbounded work (each call holds its decoded request, a database connection, a task).

Unary calls count; WatchEvents streams are long-lived and limited per merchant instead. Health
checks and reflection are never refused: load balancers must see a busy server as alive. Placed
after the call guard, the refusal is authenticated, counted and logged like any other error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from broadcaster.domain.errors import ResourceExhausted
from broadcaster.domain.reasons import Reason

_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# The least wait before calling again after TOO_MANY_CALLS (RetryInfo): calls in progress
# mostly end within milliseconds; the caller's backoff and jitter spread the retries.
BUSY_RETRY_SECONDS = 0.5


class CallLimit(grpc.aio.ServerInterceptor):
    def __init__(self, most: int) -> None:
        self.most = most
        self.running = 0
        self._limited: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method in self._limited:
            return self._limited[method]
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or method.startswith(_EXEMPT_PREFIXES):
            return handler
        inner: Any = handler.unary_unary

        async def limited(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if self.running >= self.most:
                raise ResourceExhausted(
                    f"The server is handling {self.most} calls already; retry with backoff.",
                    reason=Reason.TOO_MANY_CALLS,
                    retry_after=BUSY_RETRY_SECONDS,
                )
            self.running += 1
            try:
                return await inner(request, context)
            finally:
                self.running -= 1

        wrapped = grpc.unary_unary_rpc_method_handler(
            limited,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._limited[method] = wrapped
        return wrapped
