"""The database handle: engine set-up for SQLite (WAL) and PostgreSQL, transactions, threads.

Repositories are plain synchronous functions over a SQLAlchemy `Connection`; the gRPC handlers
await them through `Database.read` / `Database.write`, which run them on a bounded thread pool so
the event loop never blocks on the database.

A database error never carries the values being written into a log: engines hide statement
parameters, and PostgreSQL's DETAIL and CONTEXT lines ("Failing row contains (…)", the JSON
text around a bad character) and the value quoted in "invalid input syntax" are cut from the
driver's message (its `sqlstate` and `diag` stay for code that branches on them).

A database that cannot be reached (PostgreSQL restarting or failing over, the network to it
cut) fails a call with `Unavailable` (`DATABASE_UNAVAILABLE`), which callers see as a retryable
UNAVAILABLE, never as an unexpected error. There is no pre-ping (a round trip per checkout):
a call that finds its pooled connection dead marks the pool's connections stale and runs again
once on a fresh one, when nothing it did can have been committed (the connection failed before
the commit was sent); so the first call after an outage succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from broadcaster.domain.errors import Unavailable
from broadcaster.domain.reasons import Reason
from broadcaster.store import checkpoints, sqlite_library

T = TypeVar("T")
FIRST_THREADS = 6  # threads of the calls that go first (goes_first)
_FIRST: ContextVar[bool] = ContextVar("database_first", default=False)


def goes_first() -> None:
    """From now on, the current context's database calls (and those of tasks it starts) go
    first: they run on threads of their own, so that a burst of slow calls (eight Sends, each
    writing a snapshot) cannot take every thread; and on SQLite they take the one writer's turn
    ahead of ordinary writers waiting. The dispatcher's calls go first: a claim or a lease
    renewal that waits behind other writes holds sending up, or loses the lease."""
    _FIRST.set(True)


class _Turns:
    """SQLite's one writer, taken in turns by this process's threads (they wait here rather than
    on SQLite's busy handler, which retries by sleeping up to 100 ms a time and would idle a
    busy writer). A writer that goes first is served before the ordinary writers waiting,
    unless one of those has waited `patience` seconds: then it goes next, so that a stream of
    first writers cannot hold an ordinary one (a Send) up for long. But the next turn is a first
    writer's again: the two take turns while both wait, so that a burst of ordinary writers
    (thirty-two Sends at once, each writing a snapshot) cannot hold every channel's dispatch up
    until the last of them is written either."""

    def __init__(self, patience: float = 0.25) -> None:
        self._changed = threading.Condition()
        self._busy = False
        self._first_waiting = 0
        self._waiting: list[float] = []  # when each ordinary writer waiting began, oldest first
        self._patience = patience
        self._owed = False  # an ordinary writer went ahead of first ones: theirs is the next turn

    def _overdue(self, now: float) -> bool:
        return not self._owed and bool(self._waiting) and now - self._waiting[0] >= self._patience

    @contextmanager
    def hold(self, first: bool) -> Iterator[None]:
        with self._changed:
            if first:
                self._first_waiting += 1
                try:
                    while self._busy or self._overdue(time.monotonic()):
                        self._changed.wait(self._patience)
                finally:
                    self._first_waiting -= 1
            else:
                began = time.monotonic()
                self._waiting.append(began)
                try:
                    while self._busy or (
                        self._first_waiting
                        and not (self._waiting[0] == began and self._overdue(time.monotonic()))
                    ):
                        self._changed.wait(self._patience)
                finally:
                    self._waiting.remove(began)
            self._owed = not first and self._first_waiting > 0
            self._busy = True
        try:
            yield
        finally:
            with self._changed:
                self._busy = False
                self._changed.notify_all()


DEADLOCK = "40P01"  # PostgreSQL's deadlock_detected
DEADLOCK_ATTEMPTS = 3
# Seconds to open a connection before the call fails UNAVAILABLE: a database that does not
# answer at all (a partition) fails calls as fast as one that refuses them.
CONNECT_TIMEOUT = 5
# SQLSTATE classes of a server that is not there: connection exceptions (08), and the operator
# interventions of a shutdown or a start-up (57P01 admin shutdown, 57P02 crash shutdown, 57P03
# cannot connect now).
_UNREACHABLE_STATES = ("08", "57P")


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (down, restarting, the
    connection to it lost, no connection to be had), rather than that a statement failed."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    if not isinstance(orig, psycopg.OperationalError):  # SQLite has no server to lose
        return False
    return orig.sqlstate is None or orig.sqlstate.startswith(_UNREACHABLE_STATES)


# The least wait before calling again after DATABASE_UNAVAILABLE (RetryInfo): a restart or a
# fail-over takes seconds, and a call sooner would most likely meet the same.
DATABASE_RETRY_SECONDS = 1.0


def database_unavailable() -> Unavailable:
    return Unavailable(
        "The database cannot be reached right now; retry shortly.",
        reason=Reason.DATABASE_UNAVAILABLE,
        retry_after=DATABASE_RETRY_SECONDS,
    )


_DATA_LINES = re.compile(r"^(DETAIL|CONTEXT|WHERE):.*$\n?", re.MULTILINE)
_QUOTED_INPUT = re.compile(r'(invalid input (?:syntax|value) for [^:\n]*:) ".*"')


def scrub_message(message: str) -> str:
    """A PostgreSQL error message without the lines and quotes that repeat stored data."""
    return _QUOTED_INPUT.sub(r'\1 "…"', _DATA_LINES.sub("", message)).rstrip()


def _scrub_driver_error(context: ExceptionContext) -> None:
    # Both the driver's error and SQLAlchemy's wrapper (its text copied from the driver's) are
    # shown in tracebacks: scrub the two.
    for error in (context.original_exception, context.sqlalchemy_exception):
        if error is not None and error.args and isinstance(error.args[0], str):
            error.args = (scrub_message(error.args[0]), *error.args[1:])


_SQLITE_CACHE_KIB = 65536  # each connection's page cache


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front: a deferred one that upgrades later can
    # fail with SQLITE_BUSY regardless of busy_timeout.
    mode = "IMMEDIATE" if conn.get_execution_options().get("write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | URL, *, pool_size: int = 8) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sqlite_library.tune()  # before this process's first connection, if it is that
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Besides the threads' connections (the ordinary ones and those going first): the
            # one every write uses, the one point reads use and the checkpointer's (Database),
            # each held for good.
            pool_size=pool_size + FIRST_THREADS + 3,
            max_overflow=0,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # psycopg prepares a statement server-side after five runs and PostgreSQL may then switch
    # to a generic plan, which for `= ANY(array)` and JSON-fed bulk statements can be a full
    # scan instead of index probes; bulk statements are planned for their actual parameters.
    # No pre-ping (a round trip per checkout): a connection the server dropped fails its call
    # once and is replaced; pool_recycle retires connections before servers time them out.
    engine = create_engine(
        url,
        pool_size=pool_size + FIRST_THREADS,
        max_overflow=0,
        pool_recycle=1800,
        connect_args={"prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT},
        hide_parameters=True,
    )
    event.listen(engine, "handle_error", _scrub_driver_error)
    return engine


def _stale(error: BaseException) -> bool:
    """A pooled connection the server dropped (it restarted, the network was cut): the pool
    has marked its connections stale, and a call run again gets a fresh one."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Database:
    """An engine plus the thread pool that runs repository calls for async callers."""

    def __init__(self, engine: Engine, *, threads: int = 8, write_cache_mb: int = 64) -> None:
        """`write_cache_mb`: SQLite, the page cache of the connection every write uses."""
        self.engine = engine
        self._write_cache_mb = write_cache_mb
        self.dialect = engine.dialect.name
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="db")
        self._first = ThreadPoolExecutor(FIRST_THREADS, thread_name_prefix="db-first")
        self._inline: Connection | None = None
        self._writer: Connection | None = None  # SQLite: the connection every write uses
        self._turns = _Turns()  # SQLite's one writer
        # SQLite: the write-ahead log copied into the database file beside the writer.
        self._checkpoints = checkpoints.Checkpointer(engine) if self.dialect == "sqlite" else None
        self._wrote: Callable[[float], None] = lambda _: None  # time_writes
        # PostgreSQL point reads run on the event loop through SQLAlchemy's asyncio layer (the
        # same synchronous repository code, driven by greenlets), with no hop to a thread.
        self._async: AsyncEngine | None = None
        if self.dialect == "postgresql":
            self._async = create_async_engine(
                engine.url,
                pool_size=threads,
                max_overflow=0,
                pool_recycle=1800,
                connect_args={"prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT},
                isolation_level="AUTOCOMMIT",
                hide_parameters=True,
            )
            event.listen(self._async.sync_engine, "handle_error", _scrub_driver_error)

    @classmethod
    def from_url(cls, url: str | URL, *, threads: int = 8, write_cache_mb: int = 64) -> Database:
        return cls(
            make_engine(url, pool_size=threads), threads=threads, write_cache_mb=write_cache_mb
        )

    def engines(self) -> list[Engine]:
        """The engines this handle runs statements on (for instrumentation)."""
        return [self.engine] + ([self._async.sync_engine] if self._async is not None else [])

    def time_writes(self, wrote: Callable[[float], None]) -> None:
        """Have `wrote(seconds)` called after each write transaction with how long it held its
        connection, from BEGIN to the end of COMMIT or ROLLBACK (on SQLite, its turn at the
        one writer; the wait for the turn is not counted)."""
        self._wrote = wrote

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self, first: bool = False) -> Iterator[Connection]:
        if self.dialect != "sqlite":
            with self.engine.connect().execution_options(write=True) as conn, self._timed(conn):
                yield conn
            return
        # SQLite: every write of this process goes through one connection, held for the
        # purpose. Writes take turns anyway; and a connection that finds the database changed by
        # another since its last transaction drops its page cache, so writers taking turns on
        # the pool's connections each kept a cache of their own, mostly cold (one writer: peak
        # RSS of eight channels sending at once fell from 467 to 226 MB).
        with self._turns.hold(first):
            held = self._writer
            if held is None or held.closed or held.invalidated:
                held = self._writer = self.engine.connect().execution_options(write=True)
                # The one writer reads what it writes around (contacts, deliveries, their
                # indexes); a cache that holds that working set makes many channels sending at
                # once markedly faster (write_cache_mb).
                cursor = held.connection.cursor()
                cursor.execute(f"PRAGMA cache_size=-{1024 * self._write_cache_mb}")
                # Its commits leave the log to the checkpointer (store.checkpoints), up to a
                # backstop.
                cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoints.BACKSTOP}")
                cursor.close()
            with self._timed(held):
                yield held
        if self._checkpoints is not None:
            self._checkpoints.wrote()

    @contextmanager
    def _timed(self, conn: Connection) -> Iterator[None]:
        """A write transaction on `conn`, its time told to `time_writes`' callback."""
        began = time.perf_counter()
        try:
            with conn.begin():
                yield
        finally:
            self._wrote(time.perf_counter() - began)

    def _in_transaction(
        self,
        write: bool,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: bool = False,
    ) -> T:
        stale_retried = False
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                with self.writing(first) if write else self.reading() as conn:
                    result = fn(conn, *args, **kwargs)
                    committing = True  # leaving the block commits
                return result
            except DBAPIError as e:
                # PostgreSQL broke a deadlock (two bulk upserts locking rows in different
                # orders) by aborting this transaction: it did nothing, so it can run again.
                deadlock = getattr(e.orig, "sqlstate", None) == DEADLOCK
                if deadlock and attempt < DEADLOCK_ATTEMPTS:
                    time.sleep(random.uniform(0.005, 0.05) * attempt)
                    continue
                if _stale(e) and not (committing or stale_retried):
                    stale_retried = True
                    continue
                if unreachable(e):
                    raise database_unavailable() from e
                raise
            except PoolTimeout as e:
                raise database_unavailable() from e

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a read transaction on the database thread pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_transaction, False, fn, args, kwargs)
        return await loop.run_in_executor(self._first if _FIRST.get() else self._executor, call)

    async def read_point(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A read of a few rows by key (GetX, one page of ListX).

        On SQLite such a read takes tens of microseconds, less than handing it to a thread, so
        it runs right here on one connection kept for the purpose; WAL readers never wait for
        writers. On PostgreSQL it runs in autocommit: a single statement is consistent by
        itself, and BEGIN and COMMIT would be two more round trips."""
        if self._async is not None:
            for again in (True, False):
                try:
                    async with self._async.connect() as pg:
                        return await pg.run_sync(lambda sync: fn(sync, *args, **kwargs))
                except (DBAPIError, PoolTimeout) as e:
                    if again and _stale(e):
                        continue  # autocommit, and only reads: run it on a fresh connection
                    if unreachable(e):
                        raise database_unavailable() from e
                    raise
            raise AssertionError("unreachable")
        if self._inline is None or self._inline.closed:
            self._inline = self.engine.connect()
        inline = self._inline
        try:
            return fn(inline, *args, **kwargs)
        finally:
            inline.rollback()

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(conn, *args, **kwargs)` in a write transaction on the database thread pool."""
        return await self._write(_FIRST.get(), fn, args, kwargs)

    async def write_soon(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`write`, taking SQLite's one writer ahead of the ordinary writers waiting, as the
        calls that go first do (on the ordinary threads, unless the caller goes first): for a
        short transaction that holds something up, such as a Send whose recipients a reader
        numbered already (its channel starts sending when it commits)."""
        return await self._write(True, fn, args, kwargs)

    async def _write(
        self, turn_first: bool, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_transaction, True, fn, args, kwargs, turn_first)
        return await loop.run_in_executor(self._first if _FIRST.get() else self._executor, call)

    def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.close()
        for held in (self._inline, self._writer):
            if held is not None:
                held.close()
        if self._async is not None:
            # Its connections belong to the event loop that used them; the loop is ending.
            self._async.sync_engine.dispose(close=False)
        self._executor.shutdown(wait=True)
        self._first.shutdown(wait=True)
        self.engine.dispose()
