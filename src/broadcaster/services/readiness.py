"""Readiness: whether this replica should be sent calls now, for load balancers and
orchestrators (`GET /readyz`, and the gRPC health service's status for every service).

Ready means all of:
- database: it answers, within `timeout` seconds;
- schema: this build runs on it, by the rule `serve` starts by (store.compatibility): at the
  migration this build expects, or at a newer one that declares itself compatible with it
  (only expand migrations since: a rolling upgrade migrates first and then replaces replicas
  that stay ready meanwhile). An older schema needs `broadcaster migrate`; a newer one after a
  contract migration, or one that declares nothing, needs a newer build;
- dispatcher: it is running, not draining (a replica that received SIGTERM finishes its work
  and hands its channels over; it takes no new calls meanwhile).

Liveness is not readiness: a replica whose database is away is alive (`/healthz`), and
restarting it would not bring the database back.

A check is one statement (the schema's version, which also proves the database answers; at a
version this build does not know, its declared compatibility is read too). Its
answer is kept for `max_age` seconds, so probes on many paths cost at most one statement per
that time, and a check under way is shared by the probes that arrive meanwhile; besides the
probes, the replica checks every `period` seconds, so that the gRPC health status (and its
Watch streams) follows the database even when nobody asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from broadcaster.domain.errors import Unavailable
from broadcaster.store import compatibility
from broadcaster.store.database import Database

log = logging.getLogger(__name__)

Listener = Callable[[bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Report:
    """One readiness check: each part "ok", or what is wrong with it."""

    database: str
    schema: str
    dispatcher: str
    schema_version: str | None = None  # the database's, when read

    @property
    def ready(self) -> bool:
        return self.database == self.schema == self.dispatcher == "ok"

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "database": self.database,
            "schema": self.schema,
            "dispatcher": self.dispatcher,
            "schema_version": self.schema_version,
        }


class Readiness:
    def __init__(
        self,
        db: Database,
        expected_schema: str | None,
        known_schemas: frozenset[str] = frozenset(),
        *,
        timeout: float = 2.0,
        max_age: float = 1.0,
        period: float = 5.0,
    ) -> None:
        self._db = db
        self._expected = expected_schema
        self._known = known_schemas | {expected_schema}
        self._timeout = timeout
        self._max_age = max_age
        self._period = period
        self._draining = False
        self._last: Report | None = None
        self._checked = -float("inf")  # monotonic time of the last check
        self._running: asyncio.Task[Report] | None = None
        self._listeners: list[Listener] = []
        self._ready: bool | None = None  # as last told to the listeners
        self._loop: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self._draining

    def on_change(self, listener: Listener) -> None:
        """`await listener(ready)` whenever readiness changes, and on the next check (every
        listener is told then, so a new one learns where things stand)."""
        self._listeners.append(listener)
        self._ready, self._checked = None, -float("inf")

    async def drain(self) -> None:
        """The replica is stopping: not ready from now on, whatever the database says (told
        at once, without waiting for the database)."""
        self._draining = True
        last = self._last or Report("ok", "ok", "ok")
        await self._publish(Report(last.database, last.schema, "draining", last.schema_version))

    async def check(self) -> Report:
        """The current report: the last one if it is fresh, else a new check."""
        if time.monotonic() - self._checked < self._max_age and self._last is not None:
            return self._last
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._running)

    async def _check(self) -> Report:
        database, schema = "ok", "ok"
        found: compatibility.Schema | None = None
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._db.read_point(compatibility.read, self._known)
        except TimeoutError:
            database = schema = f"no answer within {self._timeout:g} s"
        except Unavailable:
            database = schema = "unreachable"
        except Exception as e:  # a check never raises: it reports
            log.warning("readiness: the database check failed", exc_info=True)
            database = schema = f"check failed: {type(e).__name__}"
        else:
            verdict = compatibility.judge(found, self._expected, self._known)
            if not verdict.runs:
                schema = verdict.says
        version = None if found is None else found.revision
        report = Report(database, schema, "draining" if self._draining else "ok", version)
        await self._publish(report)
        return report

    async def _publish(self, report: Report) -> None:
        self._last, self._checked = report, time.monotonic()
        if report.ready != self._ready:
            before, self._ready = self._ready, report.ready
            if not report.ready:  # draining is no cause for concern
                level = logging.INFO if self._draining else logging.WARNING
                log.log(level, "not ready: %s", report.as_dict())
            elif before is not None:
                log.info("ready again")
            for listener in self._listeners:
                await listener(report.ready)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._watch(), name="readiness")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            await self.check()

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
