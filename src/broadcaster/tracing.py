"""Traces: OpenTelemetry, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nothing at all otherwise.

`configure_tracing()` is called once by the composition root. With an endpoint it installs the
SDK's tracer provider (the standard `OTEL_*` variables are read by the SDK itself: service name and
resource attributes, sampler, batch processor, exporter headers, timeouts, compression, TLS)
with a batch processor and the OTLP/gRPC exporter, instruments aiohttp's client (so a channel
plugin's HTTP requests are child spans of the work that made them), and the gRPC server puts
the OpenTelemetry interceptor first. Without one nothing is installed: the API's tracer stays a
no-op, the SDK is not even imported, the gRPC server has no tracing interceptor and aiohttp is
left alone, so an untraced process pays nothing measurable.

What the rest of the service uses from here, all cheap no-ops when tracing is off:
- `span()`: a span of our own (batch sends, webhook ingestion, contact syncs), or nothing;
- `annotate()`: attributes learnt along the way, on the span in progress;
- `current_traceparent()`: the W3C `traceparent` of the span in progress, stored with a
  broadcast by Send/Schedule so that its batches, sent later by whichever replica holds the
  channel, continue the caller's trace (`parent_context`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

SERVICE_NAME = "broadcaster"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# A ProxyTracer: a no-op until a provider is installed, then the provider's.
tracer = trace.get_tracer("broadcaster")
_W3C = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class Tracing:
    """The installed tracer provider."""

    # Ended with the process (the SDK's exit hook), which exports the spans still queued.
    provider: TracerProvider


_installed: Tracing | None = None


def installed() -> Tracing | None:
    """The tracing this process installed, if any."""
    return _installed


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set and the SDK is not
    disabled (`OTEL_SDK_DISABLED=true`)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(env: Mapping[str, str] | None = None) -> Tracing | None:
    """Install tracing as the environment says (once per process; later calls return what the
    first installed). None: no endpoint, nothing installed."""
    if _installed is not None:
        return _installed
    if not wanted(env):
        return None
    # The exporter reads its OTEL_EXPORTER_OTLP_* settings (endpoint, headers, certificate,
    # timeout, compression) itself.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    tracing = install(OTLPSpanExporter())
    log.info("tracing: exporting spans over OTLP/gRPC")
    return tracing


def install(exporter: SpanExporter, *, batch: bool = True) -> Tracing:
    """Install the SDK's tracer provider with `exporter` (behind a batch processor, or a simple
    one that exports each span as it ends: tests) as the process's provider, and instrument
    aiohttp's client sessions created from now on."""
    global _installed
    if _installed is not None:
        raise RuntimeError("tracing is installed already")
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; without a
    # service name there, ours rather than the SDK's "unknown_service".
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME_KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME_KEY: SERVICE_NAME}))
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent
    # based, always on), the limits from OTEL_SPAN_*; the batch processor reads OTEL_BSP_*.
    provider = TracerProvider(resource=resource)
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    _installed = Tracing(provider)
    return _installed


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span in progress, when there is a recording one."""
    if _installed is None:
        return None
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def parent_context(traceparent: str | None) -> otel_context.Context | None:
    """A context whose parent is the span a stored `traceparent` names (None: none stored, or
    not a valid one: the span starts a trace of its own)."""
    if not traceparent:
        return None
    ctx = _W3C.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, AttributeValue],
    *,
    traceparent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span | None]:
    """A span of ours, current inside the block, as a child of the span in progress, or of
    `traceparent` when one is given (a stored one: see `current_traceparent`). Yields None,
    having done nothing, when tracing is not installed."""
    if _installed is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, context=parent_context(traceparent), kind=kind, attributes=attributes
    ) as current:
        yield current


@contextlib.contextmanager
def client_request(method: str, url: str) -> Iterator[tuple[bytes, Callable[[int], None]]]:
    """An HTTP request made without aiohttp (broadcaster.channels.posting) as a client span,
    a child of the span in progress: yields the `traceparent` header line to send (b"" when
    the span is not recorded) and what to call with the answer's status."""
    with tracer.start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
    ) as current:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        parent = carrier.get("traceparent")
        line = b"" if parent is None else b"traceparent: %s\r\n" % parent.encode("ascii")
        yield line, lambda status: current.set_attribute("http.response.status_code", status)


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Add `attributes` to the span in progress (nothing when none is recording)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(attributes)
