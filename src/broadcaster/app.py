"""Composition root: the only place that wires config, database, plugins, services and servers."""

from __future__ import annotations

import asyncio
import importlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import URL

from broadcaster.api.server import RunningServer, Services, start_server
from broadcaster.channels.manager import PluginManager
from broadcaster.config import Config, ConfigError
from broadcaster.dispatch.engine import Dispatcher, Settings
from broadcaster.dispatch.firing import Firing
from broadcaster.domain.paging import PageTokens
from broadcaster.domain.scheduling import ScheduleWindow
from broadcaster.http.app import RunningHttp, build_app, start_http
from broadcaster.metrics import LoopWatch, Metrics
from broadcaster.services.broadcasts import Broadcasts
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.contact_sync import ContactSyncer
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import Renewer
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.event_cursors import EventCursors
from broadcaster.services.events import EventFeed, Events
from broadcaster.services.forgetting import Forgetting
from broadcaster.services.readiness import Readiness
from broadcaster.services.sending import Sending
from broadcaster.services.statistics import Collector
from broadcaster.services.test_sends import TestSends
from broadcaster.services.upkeep import ChannelUpkeep
from broadcaster.services.webhooks import WebhookIngest
from broadcaster.store import compatibility, migrate
from broadcaster.store.database import Database
from broadcaster.store.notifications import Listener
from broadcaster.store.sealing import Sealer
from broadcaster.tracing import Tracing, configure_tracing

log = logging.getLogger(__name__)


class NeedsMigration(RuntimeError):
    """The database schema is older than this version of the service."""


class IncompatibleSchema(RuntimeError):
    """The database schema is newer than this version of the service, and a contract migration
    came since (or it declares nothing): this version does not run on it."""


def open_database(url: URL, *, write_cache_mb: int = 64) -> Database:
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return Database.from_url(url, write_cache_mb=write_cache_mb)


def prepare_schema(db: Database) -> None:
    """Migrate an empty database; refuse to run on one that an older version left behind, or
    on a newer one this version is not compatible with (store.compatibility)."""
    current = migrate.current_revision(db.engine)
    if current is None:
        log.info("empty database: creating the schema")
        migrate.upgrade(db.engine)
        return
    head, known = migrate.head_revision(db.engine), migrate.known_revisions(db.engine)
    with db.engine.connect() as conn:
        found = compatibility.at_revision(conn, current, known)
    verdict = compatibility.judge(found, head, known)
    if not verdict.runs:
        raise (IncompatibleSchema if verdict.newer else NeedsMigration)(verdict.says)
    if verdict.newer:
        log.info(verdict.says)


def load_plugins(config: Config) -> PluginManager:
    try:
        extra = [importlib.import_module(m) for m in config.plugin_modules]
    except ImportError as e:
        raise ConfigError(f"BROADCASTER_PLUGIN_MODULES: {e}") from e
    return PluginManager.load(config.plugins, extra)


@dataclass
class App:
    config: Config
    db: Database
    services: Services
    hub: ChannelHub
    webhooks: WebhookIngest
    dispatcher: Dispatcher
    firing: Firing
    metrics: Metrics
    readiness: Readiness
    listener: Listener | None = None  # PostgreSQL notifications from other replicas
    loop_watch: LoopWatch | None = None  # the event-loop lag ticker, once started
    renewer: Renewer | None = None  # renews the credentials channels issue for themselves
    tracing: Tracing | None = None  # OpenTelemetry, when OTEL_EXPORTER_OTLP_ENDPOINT is set
    collector: Collector | None = None  # reads broadcasts' statistics back from their channels
    forgetting: Forgetting | None = None  # forgets deleted channels' contacts

    @classmethod
    def build(cls, config: Config) -> App:
        # First: aiohttp's client sessions (the channels') are instrumented when created.
        tracing = configure_tracing()
        plugins = load_plugins(config)
        registry = plugins.register_channels()
        log.info(
            "plugins: %s; channel types: %s",
            ", ".join(plugins.plugin_names()) or "none",
            ", ".join(registry.types()) or "none",
        )
        db = open_database(config.database_url, write_cache_mb=config.sqlite_write_cache_mb)
        metrics = Metrics()
        metrics.watch_database(db)
        metrics.watch_broadcasts(db)
        ctx = ServiceContext(
            db,
            metrics=metrics,
            pages=PageTokens(config.page_token_key()),
            follower_sync_interval=None
            if config.follower_sync_interval is None
            else timedelta(seconds=config.follower_sync_interval),
            statistics=config.statistics_schedule(),
        )
        keys = config.sealing_keys()
        hub = ChannelHub(
            registry, Sealer(keys), db, config.env, ctx=ctx, connections=config.channel_connections
        )
        forgetting = Forgetting(ctx)
        channels = Channels(ctx, hub, deleted=forgetting.wake)
        broadcasts = Broadcasts(ctx, hub)
        # One PostgreSQL connection hears other replicas' Sends and Message Center events.
        listener = Listener(db) if db.dialect == "postgresql" else None
        feed = EventFeed(
            ctx, streams_per_merchant=config.watch_streams_per_merchant, listener=listener
        )
        dispatcher = Dispatcher(
            ctx,
            hub,
            Settings(in_flight=config.channel_in_flight),
            delivered=feed.notify,
            listener=listener,
        )
        sending = Sending(
            ctx,
            broadcasts,
            dispatcher.wake,
            scheduled=lambda: firing.wake(),
            cancelled=dispatcher.cancelled,
            window=ScheduleWindow(min_lead=timedelta(seconds=config.schedule_min_lead)),
        )
        firing = Firing(ctx, sending.fire_many, listener=listener, aside=hub.not_openable)
        contact_sync = ContactSyncer(ctx, hub, channels)
        services = Services(
            customer_groups=CustomerGroups(ctx),
            contacts=Contacts(ctx),
            channels=channels,
            contact_sync=contact_sync,
            upkeep=ChannelUpkeep(ctx, contact_sync, hub, public_url=config.public_url),
            broadcasts=broadcasts,
            sending=sending,
            test_sends=TestSends(ctx, broadcasts),
            events=Events(ctx, feed, EventCursors(keys)),
            registry=registry,
        )
        return cls(
            config,
            db,
            services,
            hub,
            WebhookIngest(ctx, hub),
            dispatcher,
            firing,
            metrics,
            Readiness(db, migrate.head_revision(db.engine), migrate.known_revisions(db.engine)),
            listener,
            renewer=Renewer(ctx, hub),
            tracing=tracing,
            collector=Collector(ctx, hub),
            forgetting=forgetting,
        )

    async def start(self) -> tuple[RunningServer, RunningHttp]:
        """Serve gRPC and HTTP, resume any contact sync a previous process left, and send."""
        host, port = self.config.grpc_listen
        tls = self.config.tls
        grpc_server = await start_server(
            self.services,
            self.config.tokens,
            host,
            port,
            self.metrics,
            tls=None if tls is None else (tls.cert_chain, tls.private_key, tls.client_ca),
            max_calls=self.config.max_concurrent_rpcs,
            readiness=self.readiness,
            traced=self.tracing is not None,
        )
        self.readiness.on_change(grpc_server.serving)
        self.readiness.on_change(self.metrics.readiness_changed)
        http_host, http_port = self.config.http_listen
        http = await start_http(
            build_app(
                self.webhooks,
                self.readiness,
                self.metrics,
                body_timeout=self.config.http_body_timeout,
            ),
            http_host,
            http_port,
            ssl_context=None if tls is None else tls.http_context(),
            header_timeout=self.config.http_header_timeout,
        )
        self.services.contact_sync.watch()
        self.services.upkeep.start()
        self.webhooks.prune_periodically()
        self.dispatcher.start()
        self.firing.start()
        if self.renewer is not None:
            self.renewer.start()
        if self.collector is not None:
            self.collector.start()
        if self.forgetting is not None:
            self.forgetting.start()
        self.loop_watch = self.metrics.watch_event_loop()
        await self.readiness.check()
        self.readiness.start()
        return grpc_server, http

    async def stop(self, grpc_server: RunningServer, http: RunningHttp) -> None:
        """Drain (SIGTERM): not ready from now on, so load balancers stop sending calls here;
        then, at once and side by side, the calls in progress finish, the firing loop and the
        dispatcher claim nothing more, and the batches with the channel are answered and
        recorded, for up to `BROADCASTER_DRAIN_GRACE` seconds; channel leases are released as
        each channel's sends end, and the other replicas told to take over."""
        grace = self.config.drain_grace
        await self.readiness.drain()
        await asyncio.gather(
            grpc_server.stop(grace=grace),
            self.firing.stop(grace=grace),
            self.dispatcher.stop(grace=grace),
        )
        await http.stop()
        if self.renewer is not None:
            await self.renewer.stop()
        if self.loop_watch is not None:
            self.loop_watch.cancel()
        await self.services.events.feed.close()
        if self.listener is not None:
            await self.listener.close()
        await self.services.upkeep.stop()
        if self.collector is not None:
            await self.collector.stop()
        if self.forgetting is not None:
            await self.forgetting.stop()
        await self.services.contact_sync.stop()
        await self.webhooks.stop()
        await self.readiness.stop()
        await self.hub.close()

    def close(self) -> None:
        self.db.close()
