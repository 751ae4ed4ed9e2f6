"""The call guard: a server interceptor that authenticates each call, gives it a request id, and
translates whatever it raises into a status (through api.errors, the single translator).

It wraps the method handler rather than acting before it, so the caller set in a contextvar is
visible inside the handler's own task.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from broadcaster.api import errors
from broadcaster.api.auth import TokenTable
from broadcaster.domain.auth import LOCAL, Caller

log = logging.getLogger(__name__)

current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Discovery and health checks answer without a token: load balancers and grpcurl need them.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def caller() -> Caller:
    return current_caller.get()


class CallGuard(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens
        # Wrapped handlers by method: built once, not on every call.
        self._guarded: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def _enter(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        authorization = given = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
            elif key == "x-request-id" and isinstance(value, str):
                given = value
        request_id.set(given or uuid.uuid4().hex)
        if self._tokens.empty:
            current_caller.set(LOCAL)
        else:
            current_caller.set(self._tokens.authenticate(authorization))

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method in self._guarded:
            return self._guarded[method]
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        guarded = self._guard(handler)
        self._guarded[method] = guarded
        return guarded

    def _guard(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            inner: Any = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    self._enter(context)
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as e:
                    await errors.abort(context, e)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream: Any = handler.unary_stream

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    self._enter(context)
                    async for item in inner_stream(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as e:
                    await errors.abort(context, e)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
