"""Traces: a caller's W3C trace context, sent as gRPC metadata, continues into the spans of the
RPC, of the batches that SendBroadcast caused (sent later, by the dispatcher) and of the LINE
requests they made; contact syncs and webhooks have spans of their own; log lines carry the
ids; and without an OTLP endpoint nothing of OpenTelemetry is installed.

The service runs in this process (its tracer provider has to be, to read its spans from the
SDK's in-memory exporter), on a real gRPC port and a real HTTP port, against the LINE emulator;
the tracing set-up itself is checked in fresh interpreters.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from broadcaster_line_emulator import Account, LineEmulator
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from broadcaster import logs, tracing
from broadcaster.api.server import RunningServer
from broadcaster.app import App, prepare_schema
from broadcaster.channels import Target
from broadcaster.config import Config
from broadcaster.http.app import RunningHttp
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from tests.e2e import server as live

TOKEN = "tracing-token-0000000000"
A = (("authorization", f"Bearer {TOKEN}"),)
FOLLOWERS = 1_200  # three multicast requests of at most 500
REPO = Path(__file__).resolve().parents[2]


def traceparent(trace_id: str, span_id: str) -> tuple[str, str]:
    return ("traceparent", f"00-{trace_id}-{span_id}-01")


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def parent_of(span: ReadableSpan) -> str:
    assert span.parent is not None, span.name
    return format(span.parent.span_id, "016x")


@dataclass
class Traced:
    exporter: InMemorySpanExporter
    emulator: LineEmulator
    app: App
    grpc_port: int
    http_port: int
    log: io.StringIO

    def spans(self, where: Callable[[ReadableSpan], bool]) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if where(s)]

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@pytest.fixture(scope="module")
async def traced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    if tracing.installed() is None:
        tracing.install(exporter, batch=False)
    else:  # another test module of this run installed it: read its spans here too
        installed = tracing.installed()
        assert installed is not None
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        installed.provider.add_span_processor(SimpleSpanProcessor(exporter))
    emulator = LineEmulator(seed=7)
    base_url = await emulator.start("127.0.0.1", 0)
    db = tmp_path_factory.mktemp("tracing") / "broadcaster.db"
    app = App.build(
        Config.from_env(
            {
                "BROADCASTER_DATABASE_URL": f"sqlite:///{db}",
                "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
                "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
                "BROADCASTER_AUTH_TOKENS": f"{TOKEN}=*",
                "BROADCASTER_PLUGINS": "line",
                "BROADCASTER_LINE_API_BASE": base_url,
                "BROADCASTER_SCHEDULE_MIN_LEAD": "1",
            }
        )
    )
    assert app.tracing is tracing.installed()
    await asyncio.to_thread(prepare_schema, app.db)
    servers: tuple[RunningServer, RunningHttp] = await app.start()
    # The JSON log lines of this process, the RPC lines (DEBUG when they succeed) included.
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logs.JsonFormatter())
    rpc_log = logging.getLogger("broadcaster.rpc")
    level = rpc_log.level
    rpc_log.setLevel(logging.DEBUG)
    rpc_log.addHandler(handler)
    try:
        yield Traced(exporter, emulator, app, servers[0].port, servers[1].port, log)
    finally:
        rpc_log.removeHandler(handler)
        rpc_log.setLevel(level)
        await app.stop(*servers)
        app.close()
        await emulator.stop()
        exporter.shutdown()  # spans of later tests are not kept


async def _until(check: Callable[[], Any]) -> None:
    """Poll `check` until it answers true, for a minute at most."""
    for _ in range(1200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within a minute")


async def _connect(
    channels: pb_grpc.ChannelServiceStub,
    parent: str,
    account: Account,
    metadata: tuple[tuple[str, str], ...] = A,
) -> pb.Channel:
    credentials = {
        "channel_access_token": account.access_token,
        "channel_secret": account.channel_secret,
    }
    channel = pb.Channel(type="line", credentials=credentials)
    return await channels.CreateChannel(
        pb.CreateChannelRequest(parent=parent, channel=channel), metadata=metadata
    )


async def _synced_draft(
    rpc: grpc.aio.Channel,
    merchant: str,
    account: Account,
    sync_metadata: tuple[tuple[str, str], ...] = A,
) -> tuple[pb.Channel, bpb.Broadcast]:
    """The account connected (which starts the follower sync, in the CreateChannel call's
    trace: `sync_metadata`) and its followers synced; a draft to all of them."""
    channels = pb_grpc.ChannelServiceStub(rpc)
    channel = await _connect(channels, merchant, account, sync_metadata)

    async def synced() -> bool:
        got = await channels.GetChannel(pb.GetChannelRequest(name=channel.name), metadata=A)
        assert got.last_sync.state != pb.ContactSync.FAILED, got.last_sync
        return got.last_sync.state == pb.ContactSync.SUCCEEDED

    await _until(synced)
    draft = await bpb_grpc.BroadcastServiceStub(rpc).CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=merchant,
            broadcast=bpb.Broadcast(
                display_name="traced",
                channel=channel.name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hello"))],
            ),
        ),
        metadata=A,
    )
    return channel, draft


async def _sent(broadcasts: bpb_grpc.BroadcastServiceStub, name: str, recipients: int) -> None:
    async def sent() -> bool:
        got = await broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=name), metadata=A)
        return got.state == bpb.Broadcast.SENT and got.counters.sent == recipients

    await _until(sent)


async def test_a_callers_trace_continues_into_the_line_requests_its_send_caused(
    traced: Traced,
) -> None:
    account = traced.emulator.add_account(tier="verified", followers=FOLLOWERS)
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    sync_trace = "0af7651916cd43dd8448eb211c80319c"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as rpc:
        broadcasts = bpb_grpc.BroadcastServiceStub(rpc)
        channel, draft = await _synced_draft(
            rpc,
            "merchants/m-trace",
            account,
            (*A, traceparent(sync_trace, "b7ad6b7169203331")),
        )
        await broadcasts.SendBroadcast(
            bpb.SendBroadcastRequest(name=draft.name),
            metadata=(*A, traceparent(caller_trace, caller_span)),
        )
        await _sent(broadcasts, draft.name, FOLLOWERS)
    broadcast_id = draft.name.rsplit("/", 1)[1]
    channel_id = channel.name.rsplit("/", 1)[1]

    # The RPC: a server span, a child of the caller's span.
    (send,) = traced.spans(lambda s: s.name == "/broadcaster.v1.BroadcastService/SendBroadcast")
    assert send.kind is SpanKind.SERVER
    assert hex_trace(send) == caller_trace
    assert parent_of(send) == caller_span

    # The batches, sent later by the dispatcher: a span per multicast request, children of
    # the RPC's span, with the channel, broadcast, batch, retry key and attempt.
    batches = traced.spans(
        lambda s: s.name == "send batch" and s.attributes["broadcaster.broadcast"] == broadcast_id
    )
    assert len(batches) == 3
    for span in batches:
        assert hex_trace(span) == caller_trace
        assert parent_of(span) == hex_span(send)
        attributes = dict(span.attributes or {})
        assert attributes["broadcaster.channel"] == channel_id
        assert attributes["broadcaster.merchant"] == "m-trace"
        assert attributes["broadcaster.attempt"] == 1
        assert attributes["broadcaster.outcome"] == "ACCEPTED"
    assert sorted(s.attributes["broadcaster.batch"] for s in batches) == [0, 1, 2]
    assert sorted(s.attributes["broadcaster.recipients"] for s in batches) == [200, 500, 500]
    keys = {s.attributes["broadcaster.retry_key"] for s in batches}
    assert len(keys) == 3

    # The LINE requests: client spans, children of the batch spans, same trace: a
    # multicast per batch, and the first batch's read of the month's statistics units.
    by_batch = {hex_span(s) for s in batches}
    requests = traced.spans(lambda s: s.kind is SpanKind.CLIENT and s.parent is not None)

    def url(span: Any) -> str:
        return str(span.attributes.get("url.full") or span.attributes.get("http.url"))

    caused = [s for s in requests if parent_of(s) in by_batch]
    multicasts = [s for s in caused if url(s).endswith("/v2/bot/message/multicast")]
    assert len(multicasts) == 3
    others = {url(s).rsplit("/v2/", 1)[1] for s in caused if s not in multicasts}
    assert others <= {"bot/message/aggregation/info"}, others
    for span in caused:
        assert hex_trace(span) == caller_trace
    for span in multicasts:
        status = span.attributes.get("http.response.status_code") or span.attributes.get(
            "http.status_code"
        )
        assert status == 200

    # The contact sync the CreateChannel call started: in that call's trace, with its own
    # LINE requests (follower pages, profiles) as children.
    (sync_rpc,) = traced.spans(
        lambda s: (
            s.name == "/broadcaster.v1.ChannelService/CreateChannel" and hex_trace(s) == sync_trace
        )
    )
    syncs = traced.spans(
        lambda s: s.name == "contact sync" and s.attributes.get("broadcaster.channel") == channel_id
    )
    assert syncs, "no contact sync span"
    assert all(hex_trace(s) == sync_trace for s in syncs)
    assert parent_of(syncs[0]) == hex_span(sync_rpc)
    assert syncs[0].attributes["broadcaster.sync_state"] == "SUCCEEDED"
    sync_spans = {hex_span(s) for s in syncs}
    assert any(parent_of(s) in sync_spans for s in requests), "no LINE request of the sync"

    # The log line of the SendBroadcast call carries its trace and span ids.
    (line,) = [
        r
        for r in traced.log_lines()
        if r.get("method") == "/broadcaster.v1.BroadcastService/SendBroadcast"
    ]
    assert line["trace_id"] == caller_trace
    assert line["span_id"] == hex_span(send)


async def test_a_scheduled_broadcast_is_sent_in_the_trace_of_its_schedule_call(
    traced: Traced,
) -> None:
    account = traced.emulator.add_account(tier="verified", followers=600)
    caller_trace, caller_span = "7bf92f3577b34da6a3ce929d0e0e4739", "00f067aa0ba902ba"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as rpc:
        broadcasts = bpb_grpc.BroadcastServiceStub(rpc)
        _, draft = await _synced_draft(rpc, "merchants/m-later", account)
        when = Timestamp()
        when.FromDatetime(datetime.now(UTC) + timedelta(seconds=1.5))
        await broadcasts.ScheduleBroadcast(
            bpb.ScheduleBroadcastRequest(name=draft.name, schedule_time=when),
            metadata=(*A, traceparent(caller_trace, caller_span)),
        )
        await _sent(broadcasts, draft.name, 600)
    (schedule,) = traced.spans(
        lambda s: s.name == "/broadcaster.v1.BroadcastService/ScheduleBroadcast"
    )
    assert hex_trace(schedule) == caller_trace
    broadcast_id = draft.name.rsplit("/", 1)[1]
    batches = traced.spans(
        lambda s: s.name == "send batch" and s.attributes["broadcaster.broadcast"] == broadcast_id
    )
    assert len(batches) == 2
    assert {hex_trace(s) for s in batches} == {caller_trace}
    assert {parent_of(s) for s in batches} == {hex_span(schedule)}


async def test_a_refused_call_is_traced_too(traced: Traced) -> None:
    caller_trace = "5bf92f3577b34da6a3ce929d0e0e4737"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as rpc:
        stub = bpb_grpc.BroadcastServiceStub(rpc)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetBroadcast(
                bpb.GetBroadcastRequest(name="merchants/m/broadcasts/b"),
                metadata=(
                    ("authorization", "Bearer nobody-0000000000000"),
                    traceparent(caller_trace, "00f067aa0ba902b8"),
                ),
            )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    (span,) = traced.spans(lambda s: hex_trace(s) == caller_trace)
    assert span.name == "/broadcaster.v1.BroadcastService/GetBroadcast"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    (line,) = [r for r in traced.log_lines() if r.get("trace_id") == caller_trace]
    assert line["code"] == "UNAUTHENTICATED"


async def test_a_webhook_has_a_span(traced: Traced) -> None:
    account = traced.emulator.add_account(tier="verified")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as rpc:
        channel = await _connect(pb_grpc.ChannelServiceStub(rpc), "merchants/m-hook", account)
    url = f"http://127.0.0.1:{traced.http_port}{channel.webhook_path}"
    follow = traced.emulator.follow(account)
    answer = await traced.emulator.post_webhook(account, url, [follow])
    assert answer.status == 200
    channel_id = channel.name.rsplit("/", 1)[1]
    (span,) = traced.spans(
        lambda s: (
            s.kind is SpanKind.SERVER and s.attributes.get("broadcaster.channel") == channel_id
        )
    )
    assert span.name == "POST /webhooks/{type}/{channel}"
    assert span.attributes["broadcaster.channel_type"] == "line"
    assert span.attributes["broadcaster.events_recorded"] == 1
    assert span.attributes["http.response.status_code"] == 200


def _python(code: str, env: dict[str, str]) -> str:
    """Run `code` in a fresh interpreter of this environment; its stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_batch_request_is_a_client_span_and_carries_its_traceparent(
    traced: Traced,
) -> None:
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        heads.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    poster = traced.app.hub.runtime().poster  # the one the service lends its channels
    assert poster is not None
    async with listening:
        with tracing.span("send batch", {}) as batch:
            assert batch is not None
            await poster.post(Target.of(f"http://127.0.0.1:{port}/v2/send", {}), b"", b"x")

    batch_span = format(batch.get_span_context().span_id, "016x")
    (request,) = traced.spans(
        lambda s: s.kind is SpanKind.CLIENT and s.parent is not None and parent_of(s) == batch_span
    )
    assert request.attributes is not None
    assert request.attributes["url.full"] == f"http://127.0.0.1:{port}/v2/send"
    assert request.attributes["http.response.status_code"] == 200
    sent = [line for line in heads[0].split(b"\r\n") if line.startswith(b"traceparent:")]
    assert len(sent) == 1
    assert sent[0].startswith(f"traceparent: 00-{hex_trace(request)}-{hex_span(request)}-".encode())


def test_without_an_endpoint_nothing_of_opentelemetry_is_installed(tmp_path: Path) -> None:
    out = _python(
        f"""
        import sys
        from opentelemetry import trace
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from broadcaster.app import App
        from broadcaster.config import Config

        app = App.build(Config.from_env({{
            "BROADCASTER_DATABASE_URL": "sqlite:///{tmp_path}/b.db",
            "BROADCASTER_PLUGINS": "line",
        }}))
        assert app.tracing is None
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert not AioHttpClientInstrumentor().is_instrumented_by_opentelemetry
        assert "opentelemetry.sdk.trace" not in sys.modules, "the SDK was imported"
        assert not any(m.startswith("opentelemetry.exporter") for m in sys.modules)
        print("untraced")
        """,
        {},
    )
    assert out.strip() == "untraced"


def test_an_endpoint_installs_the_otlp_exporter_as_the_sdk_reads_the_environment() -> None:
    code = """
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from broadcaster import tracing

        installed = tracing.configure_tracing()
        assert installed is not None
        provider = trace.get_tracer_provider()
        assert provider is installed.provider
        exporters = [
            p.span_exporter for p in provider._active_span_processor._span_processors
        ]
        assert [type(e) for e in exporters] == [OTLPSpanExporter]
        assert AioHttpClientInstrumentor().is_instrumented_by_opentelemetry
        print(provider.resource.attributes["service.name"], provider.sampler.get_description())
    """
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    name, sampler = _python(code, endpoint).split(maxsplit=1)
    assert name == "broadcaster"
    assert sampler.startswith("ParentBased{root:AlwaysOnSampler,")
    named = _python(
        code,
        {
            **endpoint,
            "OTEL_SERVICE_NAME": "broadcaster-eu",
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        },
    )
    assert named.split(maxsplit=1) == ["broadcaster-eu", "TraceIdRatioBased{0.25}\n"]
    # The SDK switched off: nothing, as without an endpoint.
    off = _python(
        "from broadcaster import tracing\nprint(tracing.configure_tracing())",
        {**endpoint, "OTEL_SDK_DISABLED": "true"},
    )
    assert off.strip() == "None"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: what it was sent, request by request."""

    def __init__(self) -> None:
        self.received: queue.Queue[trace_service_pb2.ExportTraceServiceRequest] = queue.Queue()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.received.put(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_serve_exports_its_spans_over_otlp_to_the_configured_endpoint(tmp_path: Path) -> None:
    collector = Collector()
    receiver = grpc.server(ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    caller_trace = "6bf92f3577b34da6a3ce929d0e0e4738"
    serve = live.start(
        f"sqlite:///{tmp_path}/b.db",
        tmp_path / "serve.log",
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: the batch goes at once
            "BROADCASTER_LOG_LEVEL": "DEBUG",
        },
    )
    try:
        with grpc.insecure_channel(serve.target) as rpc:
            bpb_grpc.BroadcastServiceStub(rpc).ListBroadcasts(
                bpb.ListBroadcastsRequest(parent="merchants/m-otlp"),
                metadata=(*live.auth(live.ADMIN), traceparent(caller_trace, "00f067aa0ba902b9")),
            )
        deadline = time.monotonic() + 30
        found = []
        while not found:
            request = collector.received.get(timeout=max(0.1, deadline - time.monotonic()))
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found += [
                        (resource, span)
                        for span in scope.spans
                        if span.trace_id.hex() == caller_trace
                    ]
    finally:
        serve.stop()
        receiver.stop(grace=None)
    ((resource, span),) = found
    assert resource["service.name"] == "broadcaster"
    assert span.name == "/broadcaster.v1.BroadcastService/ListBroadcasts"
    assert span.parent_span_id.hex() == "00f067aa0ba902b9"
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    (line,) = [r for r in lines if r.get("trace_id") == caller_trace]
    assert line["span_id"] == span.span_id.hex()
    assert line["code"] == "OK"
