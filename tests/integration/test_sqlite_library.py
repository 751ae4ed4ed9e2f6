"""SQLite's memory statistics are turned off once per process, before its first connection,
and never under an open one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from broadcaster.store import sqlite_library

_USED = """
import ctypes, sqlite3
from broadcaster.store import sqlite_library
lib = sqlite_library._library()
lib.sqlite3_memory_used.restype = ctypes.c_int64
"""


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_USED) + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.skipif(sqlite_library._library() is None, reason="no SQLite library to reach")
def test_the_first_engine_of_a_process_turns_the_statistics_off_once() -> None:
    """Tuned, an open connection shows no memory in use (the statistics are off), statements
    run, and a second call does nothing."""
    out = _run(
        """
        first, again = sqlite_library.tune(), sqlite_library.tune()
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
        total = conn.execute("SELECT SUM(x) FROM t").fetchone()[0]
        print(first, again, lib.sqlite3_memory_used(), total)
        """
    )
    assert out == "True False 0 499500"


@pytest.mark.skipif(sqlite_library._library() is None, reason="no SQLite library to reach")
def test_an_open_connection_leaves_the_library_as_it_is() -> None:
    """With a connection open, the library is not shut down under it: nothing changes, and the
    connection goes on working."""
    out = _run(
        """
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (x)")
        tuned = sqlite_library.tune()
        conn.execute("INSERT INTO t VALUES (1)")
        print(tuned, lib.sqlite3_memory_used() > 0, conn.execute("SELECT x FROM t").fetchone()[0])
        """
    )
    assert out == "False True 1"
