"""aiohttp application: `POST /webhooks/{type}/{channel}`, `GET /healthz`, `GET /readyz`,
`GET /metrics`.

`/healthz` is liveness: 200 whenever the process answers (its event loop runs), whatever the
state of the database, which a restart would not mend. `/readyz` is readiness
(services.readiness): 200 when the replica should take calls, 503 when not (the database does
not answer, this build does not run on its schema, or the replica is draining), with a
JSON body naming each part's state.

Webhook answers: 200 once the events are committed, with how many were recorded and how many
refused (`{"recorded": 3, "refused": 1}`; an empty event list is a connectivity check),
401 for a bad or missing signature (nothing is recorded), 404 for an unknown channel, 413 for an
oversized body, 408 for a body that took longer than the body timeout to arrive, 500 when
recording failed (the channel redelivers).

Slow clients cannot hold connections: a request's headers must arrive within the header
timeout of connecting (or of the previous answer on a kept-alive connection, which is also how
long an idle connection stays open: aiohttp's keep-alive timer, armed from the start of a
connection, closes one still waiting for a whole request), and its body within the body
timeout.

`/metrics` is the Prometheus text format (OpenMetrics when the scraper asks for it); see
broadcaster.metrics for what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from aiohttp import web
from opentelemetry.trace import SpanKind
from prometheus_client.exposition import choose_encoder

from broadcaster import logs, tracing
from broadcaster.channels import WebhookRejected
from broadcaster.domain.errors import NotFound
from broadcaster.metrics import Metrics
from broadcaster.services.readiness import Readiness
from broadcaster.services.webhooks import WebhookIngest

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # LINE batches events; a megabyte is far above any real request


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def build_app(
    ingest: WebhookIngest,
    readiness: Readiness,
    metrics: Metrics,
    *,
    body_timeout: float = 30.0,
) -> web.Application:
    # Webhook metrics are labelled with installed types only: the path is anyone's to choose.
    known_types = frozenset(ingest.channel_types())

    async def receive(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, f"the body exceeds {MAX_BODY} bytes")
        except TimeoutError:
            response = _json_error(408, f"the body did not arrive within {body_timeout:g} s")
            response.force_close()
            return response
        try:
            receipt = await ingest.receive(
                request.match_info["type"], request.match_info["channel"], request.headers, body
            )
        except WebhookRejected as e:
            return _json_error(401, str(e))
        except NotFound:
            return _json_error(404, "no such channel")
        except Exception:
            log.exception("webhook for channel %s not recorded", request.match_info["channel"])
            return _json_error(500, "not recorded; please redeliver")
        tracing.annotate(
            {
                "broadcaster.events_recorded": receipt.recorded,
                "broadcaster.events_refused": receipt.refused,
            }
        )
        return web.json_response({"recorded": receipt.recorded, "refused": receipt.refused})

    async def webhook(request: web.Request) -> web.Response:
        channel_type = request.match_info["type"]
        with (
            tracing.span(
                "POST /webhooks/{type}/{channel}",
                {
                    "http.request.method": "POST",
                    "http.route": "/webhooks/{type}/{channel}",
                    "broadcaster.channel_type": channel_type,
                    "broadcaster.channel": request.match_info["channel"],
                },
                kind=SpanKind.SERVER,
            ) as span,
            logs.bound(request_id=logs.new_request_id(request.headers.get("x-request-id"))),
        ):
            response = await receive(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
        metrics.webhook_request(
            channel_type if channel_type in known_types else "unknown", response.status
        )
        return response

    async def scrape(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Off the event loop: collecting counts broadcasts in the database.
        body = await asyncio.get_running_loop().run_in_executor(None, encode, metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        report = await readiness.check()
        return web.json_response(report.as_dict(), status=200 if report.ready else 503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/webhooks/{type}/{channel}", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app


@dataclass
class RunningHttp:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    header_timeout: float = 10.0,
) -> RunningHttp:
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    # aiohttp exposes the bound port only through the asyncio server it wraps.
    sockets = getattr(site._server, "sockets", None)
    assert sockets
    bound = sockets[0].getsockname()[1]
    log.info("HTTP listening on %s:%d%s", host, bound, " (TLS)" if ssl_context else "")
    return RunningHttp(runner, int(bound))
