"""SQLite: the write-ahead log copied into the database file on a thread of its own.

SQLite appends each commit to the write-ahead log, and copies the log into the database file
(a checkpoint) in the connection whose commit takes the log past 1,000 pages: here the one
writer, which every write of the process waits for (store.database). Claiming and recording
many merchants' batches (bench.recording), those checkpoints were 12-15 % of the writer's
time. A `Checkpointer` takes them off it: told of each commit, it copies the log in PASSIVE
mode (it never waits for the writer, nor the writer for it, nor any reader) on a connection of
its own, at most every `pause` seconds so that one copy covers many commits. The copy runs in
SQLite with the interpreter released, beside the writer rather than in its turn. Once the log
is copied whole and no reader is still using it, the writer's next transaction starts the log
again from its beginning, as after its own checkpoints.

The writer keeps checkpointing itself past `BACKSTOP` pages of log (about 40 MB): if this
thread falls behind or stops, the log stays bounded as before.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)

BACKSTOP = 10_000  # pages of log past which the writer checkpoints in its own commit


class Checkpointer:
    def __init__(self, engine: Engine, *, pause: float = 0.1) -> None:
        self._engine = engine
        self._pause = pause
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wrote(self) -> None:
        """A write transaction committed: the log has more to copy."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closing.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="db-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop, after the copy under way (if any); the log left is copied by SQLite when the
        last connection closes, or by the writer's next checkpoint."""
        with self._lock:
            self._closing.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn = self._engine.raw_connection()
        try:
            while True:
                self._wake.wait()
                if self._closing.is_set():
                    return
                self._wake.clear()
                cursor = conn.cursor()
                try:
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.fetchall()
                except Exception:  # the writer checkpoints past BACKSTOP meanwhile
                    log.warning("checkpoint of the write-ahead log failed", exc_info=True)
                finally:
                    cursor.close()
                if self._closing.wait(self._pause):
                    return
        finally:
            conn.close()
