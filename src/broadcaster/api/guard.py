"""The call guard: a server interceptor that authenticates each call, gives it a request id and
its log context (merchant, channel, broadcast from the request's resource name), translates
whatever it raises into a status (through api.errors, the single translator), and counts it
(`broadcaster_rpcs_total`, `broadcaster_rpc_duration_seconds`).

The token is checked on the call's metadata before its body is read: a call without a known
token gets a handler that answers UNAUTHENTICATED without reading its request. A known
caller's request reaches the handler as raw bytes and is checked against its method's limits
and parsed there (api.request_limits), so an oversized or malformed request is answered with a
status and an ErrorInfo like any other error. Large requests are parsed and handled in turns
(request_limits.LargeTurns). Health checks and reflection answer without a
token, and take requests of at most 16 KiB.

It wraps the method handler rather than acting before it, so the caller set in a contextvar is
visible inside the handler's own task.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from broadcaster import logs
from broadcaster.api import auth, errors, request_limits
from broadcaster.api.request_limits import LargeTurns, Limits
from broadcaster.domain.auth import LOCAL, Caller, TokenTable
from broadcaster.domain.errors import DomainError, Unauthenticated
from broadcaster.metrics import Metrics

log = logging.getLogger(__name__)
# One line per RPC: DEBUG when it succeeded, INFO when it did not.
rpc_log = logging.getLogger("broadcaster.rpc")

current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller")

# Discovery and health checks answer without a token: load balancers and grpcurl need them.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def caller() -> Caller:
    return current_caller.get()


@functools.cache
def _resource_paths(descriptor: Descriptor) -> tuple[tuple[str, ...], ...]:
    """Where a request names the resource it acts on, in order: `name`, `parent` (the first set
    wins: EstimateAudience has both); else its first field if that is a string
    (AddCustomerGroupMembersRequest.customer_group) or a resource with a `name`
    (UpdateBroadcastRequest.broadcast.name)."""
    fields = descriptor.fields_by_name
    paths: list[tuple[str, ...]] = [
        (f,) for f in ("name", "parent") if f in fields and fields[f].type == fields[f].TYPE_STRING
    ]
    if not paths and descriptor.fields:
        first = descriptor.fields[0]
        if first.type == first.TYPE_STRING:
            paths.append((first.name,))
        elif first.message_type is not None and "name" in first.message_type.fields_by_name:
            paths.append((first.name, "name"))
    return tuple(paths)


def resource_of(request: Any) -> str:
    """The resource name a request acts on, or "" (for the log context, not for access)."""
    if not isinstance(request, Message):
        return ""
    for path in _resource_paths(request.DESCRIPTOR):
        value: Any = request
        for field in path:
            value = getattr(value, field)
        if value and isinstance(value, str):
            return value
    return ""


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _unparsed(raw: bytes) -> bytes:
    return raw


def _drop(raw: bytes) -> None:
    return None


def _replace(
    handler: grpc.RpcMethodHandler[Any, Any], **changes: Any
) -> grpc.RpcMethodHandler[Any, Any]:
    """A copy of `handler` (a named tuple) with `changes`."""
    replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**changes)  # type: ignore[attr-defined]
    return replaced


class RequestTooLarge(ValueError):
    """A reflection request over SMALL bytes (raised by its deserializer)."""


def _bounded(
    handler: grpc.RpcMethodHandler[Any, Any] | None, method: str
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """An open method's handler (health, reflection) whose requests are refused unparsed past
    SMALL bytes: they answer without a token, so no large request should reach a parser. Health
    answers RESOURCE_EXHAUSTED with an ErrorInfo; the reflection stream just ends."""
    if handler is None or handler.request_deserializer is None:
        return handler
    parse = handler.request_deserializer
    small = request_limits.Limit(request_limits.SMALL)

    def checked(raw: bytes) -> Any:
        if len(raw) > request_limits.SMALL:
            raise request_limits.too_large(method, len(raw), small)
        return parse(raw)

    if handler.unary_unary is not None:
        unary_inner: Any = handler.unary_unary

        async def unary(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                request = checked(raw)
            except DomainError as e:
                await errors.abort(context, e)
            return await unary_inner(request, context)

        return _replace(handler, unary_unary=unary, request_deserializer=None)
    if handler.unary_stream is not None:
        stream_inner: Any = handler.unary_stream

        async def stream(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                request = checked(raw)
            except DomainError as e:
                await errors.abort(context, e)
            async for item in stream_inner(request, context):
                yield item

        return _replace(handler, unary_stream=stream, request_deserializer=None)

    def deserializer(raw: bytes) -> Any:
        if len(raw) > request_limits.SMALL:
            raise RequestTooLarge(f"{len(raw)} bytes; at most {request_limits.SMALL}")
        return parse(raw)

    return _replace(handler, request_deserializer=deserializer)


class CallGuard(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenTable, metrics: Metrics, limits: Limits | None = None) -> None:
        """`limits`: each method's request limits (default: 16 KiB for every method)."""
        self._tokens = tokens
        self._metrics = metrics
        self._limits = Limits({}) if limits is None else limits
        self._large = LargeTurns()
        # Wrapped handlers by method: built once, not on every call. A method's refusal
        # handler answers the calls that carry no known token.
        self._guarded: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}
        self._refusals: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def _authenticate(self, metadata: Any) -> Caller:
        """The caller the metadata's token names; Unauthenticated otherwise."""
        if self._tokens.empty:
            return LOCAL
        authorization = None
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
        return auth.authenticate(self._tokens, authorization)

    def _enter_call(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Set the call's request id and caller; Unauthenticated without a known token."""
        given = None
        metadata = context.invocation_metadata() or ()
        for key, value in metadata:
            if key == "x-request-id" and isinstance(value, str):
                given = value
        logs.request_id.set(logs.new_request_id(given))
        current_caller.set(self._authenticate(metadata))

    async def _enter(
        self,
        method: str,
        parse: Callable[[bytes], Any],
        context: grpc.aio.ServicerContext[Any, Any],
        raw: Any,
    ) -> Any:
        """Set the call's request id and caller, then check and parse its request."""
        self._enter_call(context)
        request = await request_limits.decode(method, self._limits.of(method), parse, raw)
        logs.bind_resource(resource_of(request))
        return request

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(_OPEN_PREFIXES):
            if method in self._guarded:
                return self._guarded[method]
            bounded = _bounded(await continuation(handler_call_details), method)
            if bounded is not None:  # names that match no method are not kept
                self._guarded[method] = bounded
            return bounded
        try:
            self._authenticate(handler_call_details.invocation_metadata)
        except Unauthenticated:
            known = self._refusals
        else:
            known = self._guarded
        if method in known:
            return known[method]
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if known is self._refusals:
            guarded = self._refusal(method, unary=handler.unary_stream is None)
        else:
            guarded = self._guard(method, handler)
        known[method] = guarded
        return guarded

    def _refusal(self, method: str, *, unary: bool) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler for calls of `method` without a known token: it answers UNAUTHENTICATED
        at once. It is a streaming handler whatever the method, so gRPC hands it the call
        before reading any of the request: the body is never read into memory, let alone
        parsed (a unary handler would be called only once the whole message had arrived).
        It is an async generator that yields nothing, as interceptors that wrap streaming
        handlers (the tracing one) expect of a response stream."""

        async def refuse(
            requests: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                self._enter_call(context)
            except Exception as e:
                await errors.abort(context, e)
            finally:
                self._ended(method, context, None, started, unary=unary)
            return
            yield  # an async generator: no response, ever

        return grpc.stream_stream_rpc_method_handler(refuse, request_deserializer=_drop)

    def _ended(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        outcome: grpc.StatusCode | None,
        started: float,
        unary: bool,
    ) -> None:
        """Count and log a finished call; `outcome` None: it was aborted with a status (still
        CANCELLED when the handler never finished: the caller went away or hit its deadline)."""
        code = _code_of(context) if outcome is None else outcome
        seconds = time.perf_counter() - started
        self._metrics.rpc(method, code.name, seconds if unary else None)
        level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO
        if rpc_log.isEnabledFor(level):
            rpc_log.log(
                level,
                "%s %s in %.1f ms",
                method,
                code.name,
                seconds * 1000,
                extra={
                    "method": method,
                    "code": code.name,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

    def _guard(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        parse: Callable[[bytes], Any] = handler.request_deserializer or _unparsed
        # No deserializer: gRPC hands the handler the raw bytes, which `_enter` checks against
        # the method's limits and parses.
        deserializer = None
        if handler.unary_unary is not None:
            inner: Any = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started = time.perf_counter()
                outcome: grpc.StatusCode | None = grpc.StatusCode.CANCELLED
                try:
                    async with self._large.turn(self._limits.of(method), request):
                        request = await self._enter(method, parse, context, request)
                        response = await inner(request, context)
                    outcome = grpc.StatusCode.OK
                    return response
                except grpc.aio.AbortError:
                    outcome = None
                    raise
                except Exception as e:
                    outcome = None
                    await errors.abort(context, e)
                finally:
                    self._ended(method, context, outcome, started, unary=True)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream: Any = handler.unary_stream

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                started = time.perf_counter()
                outcome: grpc.StatusCode | None = grpc.StatusCode.CANCELLED
                try:
                    request = await self._enter(method, parse, context, request)
                    async for item in inner_stream(request, context):
                        yield item
                    outcome = grpc.StatusCode.OK
                except grpc.aio.AbortError:
                    outcome = None
                    raise
                except Exception as e:
                    outcome = None
                    await errors.abort(context, e)
                finally:
                    self._ended(method, context, outcome, started, unary=False)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
