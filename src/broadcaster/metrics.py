"""Every Prometheus metric the service exposes (`GET /metrics` on the HTTP port), with one typed
method per thing that happens.

A `Metrics` owns its registry: the app builds one and hands it to the call guard, the HTTP app and
(through ServiceContext) the services and the dispatcher, so tests can run several apps in one
process without their counters meeting. Labels are channel types, RPC names, codes and outcomes:
never merchant, channel or broadcast ids (unbounded, and not for a scrape endpoint to reveal).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, event, func, select

from broadcaster.channels import InteractionEvent, RefusedEvent, SendOutcome, SendStatus
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.health import Issue
from broadcaster.store.tables import broadcasts

if TYPE_CHECKING:
    from broadcaster.store.database import Database

_ISSUE_NAMES = {int(i): str(i.name).lower() for i in Issue}
log = logging.getLogger(__name__)

# Channel requests: tens of milliseconds when healthy, seconds when the channel struggles.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Event-loop lag: under a millisecond when idle; anything past 50 ms is a stall callers feel.
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_TICK = 0.05  # seconds between the ticker's wake-ups (see LoopWatch)
# Token-bucket waits: mostly a few milliseconds at the ceiling, longer after a 429.
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


def count_broadcasts_by_state(conn: Connection) -> dict[int, int]:
    """One GROUP BY over the broadcasts table (ix_broadcasts_state_channel covers it)."""
    rows = conn.execute(select(broadcasts.c.state, func.count()).group_by(broadcasts.c.state)).all()
    return {int(state): int(n) for state, n in rows}


class BroadcastStates:
    """`broadcaster_broadcasts{state}`, counted from the database at scrape time.

    A custom collector rather than a gauge kept up to date: broadcasts change state in several
    processes (any replica may finish one), and only the database knows the totals."""

    NAME = "broadcaster_broadcasts"
    HELP = "Broadcasts by state, counted in the database when scraped (all replicas)."

    def __init__(self, count: Callable[[], Mapping[int, int]]) -> None:
        self._count = count

    def describe(self) -> Iterable[Metric]:
        # Present so that registering never runs the query.
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["state"])]

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self._count()
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("could not count broadcasts by state", exc_info=True)
            return []
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["state"])
        for state in BroadcastState:
            family.add_metric([state.name.lower()], counts.get(int(state), 0))
        return [family]


class LoopWatch:
    """The event-loop lag ticker: a timer callback (not a task, which would cost the loop a
    second turn per tick), due every LAG_TICK, that records how late it ran.

    The tick is a trade: each wake-up costs an idle process CPU (a 10 ms tick, about 1.5 % of a
    core), while a stall longer than a tick is always seen, and shorter ones in proportion to
    their length, which is what the histogram shows anyway."""

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics) -> None:
        self._loop = loop
        self._lag = metrics.loop_lag
        self._lag_max = metrics.loop_lag_max
        self._longest = 0.0
        self._due = loop.time() + LAG_TICK
        self._timer = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        lag = max(now - self._due, 0.0)
        self._lag.observe(lag)
        if lag > self._longest:
            self._longest = lag
            self._lag_max.set(lag)
        self._due = now + LAG_TICK
        self._timer = self._loop.call_at(self._due, self._tick)

    def cancel(self) -> None:
        self._timer.cancel()


class Metrics:
    def __init__(self, *, process: bool = True) -> None:
        self.registry = r = CollectorRegistry()
        if process:  # CPU, memory, open files, GC: the same series every Python client exposes
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        # gRPC (api.guard: every RPC but health checks and reflection).
        self.rpcs = Counter(
            "broadcaster_rpcs",
            "RPCs handled, by service, method and gRPC status code.",
            ["service", "method", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "broadcaster_rpc_duration_seconds",
            "Time to handle a unary RPC, by service and method.",
            ["service", "method"],
            registry=r,
        )

        # Sending (dispatch).
        self.recipients_sent = Counter(
            "broadcaster_recipients_sent",
            "Recipients the channel accepted a broadcast for.",
            ["channel_type"],
            registry=r,
        )
        self.recipients_failed = Counter(
            "broadcaster_recipients_failed",
            "Recipients a broadcast could not be sent to, or whose outcome is unknown.",
            ["channel_type"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "broadcaster_batch_send_duration_seconds",
            "Time of one send request (one batch attempt) to the channel, by outcome.",
            ["channel_type", "outcome"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.channel_responses = Counter(
            "broadcaster_channel_responses",
            "Answers to send requests, by channel type and outcome (accepted, already_accepted, "
            "retry_later, rate_limited, invalid_recipients, quota_exhausted, fatal, error).",
            ["channel_type", "outcome"],
            registry=r,
        )
        self.rate_limit_waits = Histogram(
            "broadcaster_rate_limit_wait_seconds",
            "Time a send request waited for the channel's rate limiter (token bucket).",
            ["channel_type"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )

        # Webhooks (http.app, services.webhooks).
        self.webhook_requests = Counter(
            "broadcaster_webhook_requests",
            "Webhook requests by channel type and HTTP status answered.",
            ["channel_type", "status"],
            registry=r,
        )
        self.webhook_events = Counter(
            "broadcaster_webhook_events",
            "Webhook events received (redeliveries included), by channel type and event kind.",
            ["channel_type", "kind"],
            registry=r,
        )
        self.webhook_events_refused = Counter(
            "broadcaster_webhook_events_refused",
            "Signed webhook events refused (not recorded), by channel type and refusal.",
            ["channel_type", "refusal"],
            registry=r,
        )
        self.webhook_signature_failures = Counter(
            "broadcaster_webhook_signature_failures",
            "Webhook requests refused for a bad or missing signature.",
            ["channel_type"],
            registry=r,
        )

        # Contact sync (services.contact_sync).
        self.contacts_synced = Counter(
            "broadcaster_contacts_synced",
            "Contacts listed by channels' follower lists and committed.",
            ["channel_type"],
            registry=r,
        )
        self.profiles_fetched = Counter(
            "broadcaster_contact_profiles_fetched",
            "Contact profiles (names, pictures) fetched and committed.",
            ["channel_type"],
            registry=r,
        )
        self.syncs_running = Gauge(
            "broadcaster_contact_syncs_running",
            "Contact syncs running in this process.",
            registry=r,
        )
        self.syncs_finished = Counter(
            "broadcaster_contact_syncs_finished",
            "Contact syncs this process finished, by channel type and final state.",
            ["channel_type", "state"],
            registry=r,
        )
        # Channel upkeep (services.upkeep).
        self.channels_unhealthy = Counter(
            "broadcaster_channels_turned_unhealthy",
            "Channels that turned to need attention, by channel type and issue (one count per "
            "issue found at that moment).",
            ["channel_type", "issue"],
            registry=r,
        )
        self.channel_issues = Counter(
            "broadcaster_channel_issues_opened",
            "Issues opened on channels (a channel already needing attention counts its new "
            "issues too), by channel type and issue.",
            ["channel_type", "issue"],
            registry=r,
        )
        self.follower_resyncs = Counter(
            "broadcaster_follower_resyncs",
            "Scheduled follower re-syncs this process claimed, by channel type and outcome "
            "(started, running: one was going already).",
            ["channel_type", "outcome"],
            registry=r,
        )
        self.statistics_reads = Counter(
            "broadcaster_statistics_reads",
            "Reads of broadcasts' statistics from their channels, by channel type and outcome "
            "(read, none: the channel has no figures yet, failed: unreachable or refused, "
            "stopped: the channel is gone).",
            ["channel_type", "outcome"],
            registry=r,
        )
        self.statistics_read_seconds = Histogram(
            "broadcaster_statistics_read_seconds",
            "Time a read of a broadcast's statistics took, by channel type.",
            ["channel_type"],
            registry=r,
        )
        # The database (watch_database).
        self.db_statements = Counter(
            "broadcaster_db_statements",
            "SQL statements this process ran against the database (commits not counted), by "
            "whether their transaction wrote.",
            ["kind"],
            registry=r,
        )
        self.db_write_seconds = Counter(
            "broadcaster_db_write_seconds",
            "Seconds this process spent in write transactions, from BEGIN to the end of COMMIT, "
            "summed. On SQLite, whose writes take turns at one writer, its rate is the share of "
            "time the writer was busy: near 1, the writer is what limits this replica.",
            registry=r,
        )
        # The event loop (watch_event_loop): how late a 50 ms ticker wakes up.
        self.loop_lag = Histogram(
            "broadcaster_event_loop_lag_seconds",
            "How late a 50 ms ticker on the event loop woke up: the loop was busy that long.",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "broadcaster_event_loop_lag_max_seconds",
            "The longest event-loop lag seen since the process started.",
            registry=r,
        )
        # Channel credentials (services/credentials.py, the dispatcher, quota reads).
        self.credentials_refused = Counter(
            "broadcaster_channel_credentials_refused",
            "Channels that turned CREDENTIALS_INVALID: the channel refused the account's "
            "credentials (a refused short-lived token that a renewed one replaces is not counted).",
            ["channel_type"],
            registry=r,
        )
        self.credential_renewals = Counter(
            "broadcaster_channel_credential_renewals",
            "Credentials a channel issued for itself (LINE: short-lived channel access tokens), "
            "by channel type and outcome (renewed, failed).",
            ["channel_type", "outcome"],
            registry=r,
        )
        # Readiness (services.readiness), as /readyz and the gRPC health service report it.
        self.ready = Gauge(
            "broadcaster_ready",
            "1 while this replica is ready to take calls (database reachable, schema "
            "compatible, not draining), else 0.",
            registry=r,
        )
        self._rpc_counts: dict[tuple[str, str], Counter] = {}
        self._rpc_timers: dict[str, Histogram] = {}

    async def readiness_changed(self, ready: bool) -> None:
        """A readiness listener: `broadcaster_ready` follows it."""
        self.ready.set(1 if ready else 0)

    # -- the event loop --------------------------------------------------------------------

    def watch_event_loop(self) -> LoopWatch:
        """Start a ticker on the running loop that wakes every LAG_TICK and records how late it
        woke (`broadcaster_event_loop_lag_seconds`); `cancel()` the watch to stop it."""
        return LoopWatch(asyncio.get_running_loop(), self)

    # -- gRPC ------------------------------------------------------------------------------

    def rpc(self, full_method: str, code: str, seconds: float | None) -> None:
        """One RPC ended: `full_method` as gRPC names it (`/pkg.Service/Method`), `code` a
        status code name (`OK`, `NOT_FOUND`), `seconds` for unary calls (None for streams)."""
        # Labelled children are cached: this runs on every call.
        counter = self._rpc_counts.get((full_method, code))
        if counter is None:
            service, _, method = full_method.lstrip("/").rpartition("/")
            counter = self._rpc_counts[(full_method, code)] = self.rpcs.labels(
                service, method, code
            )
        counter.inc()
        if seconds is not None:
            timer = self._rpc_timers.get(full_method)
            if timer is None:
                service, _, method = full_method.lstrip("/").rpartition("/")
                timer = self._rpc_timers[full_method] = self.rpc_seconds.labels(service, method)
            timer.observe(seconds)

    # -- sending (called by the dispatcher) ------------------------------------------------

    def record_batch(
        self,
        channel_type: str,
        outcome: SendOutcome | SendStatus | str,
        seconds: float,
        recipients_sent: int = 0,
        recipients_failed: int = 0,
    ) -> None:
        """One send request answered: its outcome (a SendOutcome, whose 429s count as
        `rate_limited`; a SendStatus; or a short word such as "error" for an exception), how
        long the request took, and how many recipients it settled as sent and as failed (0 and
        0 for an answer that will be retried)."""
        if isinstance(outcome, SendOutcome):
            label = "rate_limited" if outcome.rate_limited else outcome.status.value
        elif isinstance(outcome, SendStatus):
            label = outcome.value
        else:
            label = outcome
        self.channel_responses.labels(channel_type, label).inc()
        self.batch_seconds.labels(channel_type, label).observe(seconds)
        self.recipients(channel_type, sent=recipients_sent, failed=recipients_failed)

    def recipients(self, channel_type: str, *, sent: int = 0, failed: int = 0) -> None:
        """Recipients settled outside a send request (e.g. OUTCOME_UNKNOWN after the key
        window, or a batch stopped on cancel/quota counted as failed)."""
        if sent:
            self.recipients_sent.labels(channel_type).inc(sent)
        if failed:
            self.recipients_failed.labels(channel_type).inc(failed)

    def rate_limit_wait(self, channel_type: str, seconds: float) -> None:
        """A send request waited `seconds` for the rate limiter (record zero waits too, so the
        count is the number of requests that went through the limiter)."""
        self.rate_limit_waits.labels(channel_type).observe(seconds)

    # -- webhooks --------------------------------------------------------------------------

    def webhook_request(self, channel_type: str, status: int) -> None:
        self.webhook_requests.labels(channel_type, str(status)).inc()

    def webhook_received(self, channel_type: str, events: Iterable[InteractionEvent]) -> None:
        kinds: dict[str, int] = {}
        for e in events:
            kinds[e.kind.value] = kinds.get(e.kind.value, 0) + 1
        for kind, n in kinds.items():
            self.webhook_events.labels(channel_type, kind).inc(n)

    def webhook_refused(self, channel_type: str, refused: Iterable[RefusedEvent]) -> None:
        for refusal, n in collections.Counter(r.refusal.value for r in refused).items():
            self.webhook_events_refused.labels(channel_type, refusal).inc(n)

    def webhook_signature_failure(self, channel_type: str) -> None:
        self.webhook_signature_failures.labels(channel_type).inc()

    # -- channel credentials ---------------------------------------------------------------

    def credential_refused(self, channel_type: str) -> None:
        self.credentials_refused.labels(channel_type).inc()

    def credential_renewal(self, channel_type: str, outcome: str) -> None:
        """A renewal of an issued credential: `renewed` or `failed`."""
        self.credential_renewals.labels(channel_type, outcome).inc()

    # -- contact sync ----------------------------------------------------------------------

    def sync_progress(self, channel_type: str, *, contacts: int = 0, profiles: int = 0) -> None:
        if contacts:
            self.contacts_synced.labels(channel_type).inc(contacts)
        if profiles:
            self.profiles_fetched.labels(channel_type).inc(profiles)

    @contextlib.contextmanager
    def sync_running(self) -> Iterator[None]:
        self.syncs_running.inc()
        try:
            yield
        finally:
            self.syncs_running.dec()

    def sync_finished(self, channel_type: str, state: str) -> None:
        self.syncs_finished.labels(channel_type, state).inc()

    def health_changed(self, channel_type: str, before: int, now: int) -> None:
        """A channel's issues (domain.health.Issue bits) went from `before` to `now`."""
        opened = now & ~before
        for bit in range(opened.bit_length()):
            if opened & (1 << bit):
                issue = _ISSUE_NAMES.get(1 << bit, str(1 << bit))
                self.channel_issues.labels(channel_type, issue).inc()
                if not before:
                    self.channels_unhealthy.labels(channel_type, issue).inc()

    def follower_resync(self, channel_type: str, outcome: str) -> None:
        self.follower_resyncs.labels(channel_type, outcome).inc()

    def statistics_read(self, channel_type: str, outcome: str, seconds: float | None) -> None:
        self.statistics_reads.labels(channel_type, outcome).inc()
        if seconds is not None:
            self.statistics_read_seconds.labels(channel_type).observe(seconds)

    # -- the database ----------------------------------------------------------------------

    def watch_database(self, db: Database) -> None:
        """Count the statements `db` runs (`broadcaster_db_statements`): what an operator divides
        by requests sent, or watches on an idle replica; and the time spent writing
        (`broadcaster_db_write_seconds`)."""
        written = self.db_statements.labels("write")
        read = self.db_statements.labels("read")
        db.time_writes(self.db_write_seconds.inc)

        def executed(conn: Any, *_: Any) -> None:
            (written if conn.get_execution_options().get("write") else read).inc()

        for engine in db.engines():
            event.listen(engine, "after_cursor_execute", executed)

    # -- broadcasts ------------------------------------------------------------------------

    def watch_broadcasts(self, db: Database) -> None:
        """Expose broadcasts by state, counted in `db` at each scrape. The query runs on the
        scraping thread (the HTTP app renders off the event loop)."""

        def count() -> dict[int, int]:
            with db.reading() as conn:
                return count_broadcasts_by_state(conn)

        self.registry.register(BroadcastStates(count))
