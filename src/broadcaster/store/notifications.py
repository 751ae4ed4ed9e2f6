"""PostgreSQL notifications between replicas: a transaction queues one with `notify` (PostgreSQL
sends it when the transaction commits, to every replica listening), and each process receives
them on a single connection of its own, whatever parts of it subscribe (`Listener`).

On SQLite there is one process and nothing to send: `notify` does nothing, and the parts of the
process signal each other directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import Connection, text

from broadcaster.store.database import Database

log = logging.getLogger(__name__)

# Broadcasts became dispatchable (a Send, or a dispatch handed back with work left); the
# payload names the channel, or is empty for any. Or a sending broadcast was cancelled: the
# payload is `cancelled_payload` (a replica older than that only looks for work).
DISPATCH_CHANNEL = "broadcaster_dispatch"
_CANCELLED = "cancelled "
# A broadcast was scheduled: the firing loops look again when the next one is due.
SCHEDULE_CHANNEL = "broadcaster_schedule"

Notified = Callable[[str | None], None]


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """Queue a notification on `channel`, sent to every listening replica if and when the
    transaction commits (nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


def cancelled_payload(channel: str, broadcast: str) -> str:
    """The DISPATCH_CHANNEL payload saying the broadcast of the channel was cancelled."""
    return f"{_CANCELLED}{channel} {broadcast}"


def cancelled_in(payload: str | None) -> tuple[str, str] | None:
    """(channel, broadcast) if the payload says a broadcast was cancelled."""
    if not payload or not payload.startswith(_CANCELLED):
        return None
    channel, _, broadcast = payload.removeprefix(_CANCELLED).partition(" ")
    return (channel, broadcast) if channel and broadcast else None


class Listener:
    """One PostgreSQL connection per process LISTENing on the channels its subscribers name.

    `subscribe(channel, notified)` calls `notified(payload)` for each notification on `channel`,
    and `notified(None)` after each (re)connect: what was sent while the connection was away is
    lost, so the subscriber is to look for itself. A channel no subscriber named before opens the
    connection again, listening on all of them (subscribing is rare: a part of the process
    subscribes when it starts). Costs nothing while nothing is sent: the connection waits."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._subscribers: dict[str, list[Notified]] = {}
        self._task: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def subscribe(self, channel: str, notified: Notified) -> Callable[[], None]:
        """Call `notified` for `channel`'s notifications from now on; returns the call that
        stops it. Needs a running event loop."""
        new = channel not in self._subscribers
        self._subscribers.setdefault(channel, []).append(notified)
        if new or self._task is None:
            self._restart()

        def unsubscribe() -> None:
            subscribers = self._subscribers.get(channel, [])
            if notified in subscribers:
                subscribers.remove(notified)
            if not any(self._subscribers.values()):
                self._retire()

        return unsubscribe

    def _restart(self) -> None:
        self._retire()
        self._task = asyncio.create_task(self._listen(sorted(self._subscribers)), name="listen")

    def _retire(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._retired.add(self._task)
            self._task.add_done_callback(self._retired.discard)
            self._task = None

    async def close(self) -> None:
        """Stop listening (the subscribers are forgotten)."""
        self._subscribers.clear()
        self._retire()
        for task in list(self._retired):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _deliver(self, channel: str, payload: str | None) -> None:
        for notified in list(self._subscribers.get(channel, ())):
            try:
                notified(payload)
            except Exception:
                log.exception("notification on %s: a subscriber failed", channel)

    async def _listen(self, channels: list[str]) -> None:
        url = self._db.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        pause = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                async with conn:
                    for channel in channels:
                        await conn.execute(f"LISTEN {channel}")
                    pause = 0.5
                    for channel in channels:
                        self._deliver(channel, None)
                    await self._receive(conn)
            except Exception as e:  # subscribers fall back on their safety polls meanwhile
                log.warning("listener: %s; reconnecting in %.1f s", type(e).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Deliver notifications as the connection's socket brings them, until it fails.

        Not `conn.notifies()`, which wakes up ten times a second to look; this waits for the
        socket alone, so an idle process sleeps."""
        pgconn, encoding = conn.pgconn, conn.info.encoding
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        fd = conn.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                readable.clear()
                pgconn.consume_input()  # raises once the connection is broken
                while (note := pgconn.notifies()) is not None:
                    self._deliver(note.relname.decode(encoding), note.extra.decode(encoding))
                await readable.wait()
        finally:
            loop.remove_reader(fd)


class Subscription:
    """One part of the process listening on one channel: through the process's listener when it
    is given one, else through a listener of its own, opened on `start` and closed on `close`.
    Nothing on SQLite."""

    def __init__(
        self, db: Database, channel: str, notified: Notified, listener: Listener | None = None
    ) -> None:
        self._db = db
        self._channel = channel
        self._notified = notified
        self._listener = listener
        self._own: Listener | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._db.dialect != "postgresql" or self._unsubscribe is not None:
            return
        listener = self._listener
        if listener is None:
            listener = self._own = Listener(self._db)
        self._unsubscribe = listener.subscribe(self._channel, self._notified)

    def cancel(self) -> None:
        """No more notifications from now on."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def close(self) -> None:
        """`cancel`, and close the listener of its own if it opened one."""
        self.cancel()
        if self._own is not None:
            await self._own.close()
            self._own = None
