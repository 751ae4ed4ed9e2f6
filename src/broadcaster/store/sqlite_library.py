"""SQLite's library-wide settings, made once per process, before its first connection opens.

By default SQLite keeps statistics of its memory (`sqlite3_memory_used` and the like) under one
mutex that every allocation of every connection takes. Threads running statements at once (the
one writer, the checkpointer, the readers) then queue on that mutex: eight snapshots of 100,000
recipients numbered by eight threads at once took 0.72-0.87 s in all and 0.12-0.15 CPU-s each,
against 0.43 s and 0.05 CPU-s one after another. With the statistics off (what SQLite itself
recommends, as the compile-time option SQLITE_DEFAULT_MEMSTATUS=0), 0.36 s and 0.06-0.09 CPU-s
each. Nothing of this service reads them.

The setting can be changed only while the library is shut down, and shutting it down with a
connection open is undefined. So it is changed only when SQLite has no memory in use, which
means no connection is open: true when the process makes its first engine (`tune`). Where the
library cannot be reached (a Python whose sqlite3 module carries its own copy of SQLite), or a
connection is already open, nothing changes: the statistics stay on, and everything works as
before, only slower when many threads run statements at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

_CONFIG_MEMSTATUS = 9  # SQLITE_CONFIG_MEMSTATUS
_OK = 0

_lock = threading.Lock()
_tried = False


def tune() -> bool:
    """Turn SQLite's memory statistics off, if this is the first call of the process and no
    connection is open; returns whether it did."""
    global _tried
    with _lock:
        if _tried:
            return False
        _tried = True
        lib = _library()
        if lib is None:
            return False
        used = lib.sqlite3_memory_used
        used.restype = ctypes.c_int64
        if used() != 0:
            return False  # a connection is open (and the statistics are on)
        # The library reached here must be the one the sqlite3 module uses, with its
        # statistics on: a connection of that module then shows as memory in use.
        probe = sqlite3.connect(":memory:")
        try:
            counted = used() > 0
        finally:
            probe.close()
        if not counted or used() != 0:
            return False
        if lib.sqlite3_shutdown() != _OK:
            return False
        configured: bool = lib.sqlite3_config(_CONFIG_MEMSTATUS, ctypes.c_int(0)) == _OK
        if lib.sqlite3_initialize() != _OK:  # as the next connection would, had this failed
            return False
        log.debug("SQLite's memory statistics are off: %s", configured)
        return configured


def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None
