"""SQLite: the write-ahead log is copied into the database file by a thread of its own
(store.checkpoints), not in the one writer's commits; and that thread ends with the handle."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sqlalchemy import Connection, text

from broadcaster.store import checkpoints
from broadcaster.store.database import Database

ROWS = 100  # per transaction, of 4,000 bytes: about 100 pages
WRITES = 8  # about 800 pages in all: under the 1,000 past which SQLite would copy by itself


def _create(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE filler (x BLOB)"))


def _fill(conn: Connection) -> None:
    conn.execute(
        text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)"
            " INSERT INTO filler SELECT randomblob(4000) FROM n"
        ),
        {"rows": ROWS},
    )


def _autocheckpoint(conn: Connection) -> int:
    return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "db-checkpoint"]


async def test_the_log_reaches_the_database_file_without_the_writer_copying_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "copied.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        await db.write(_create)
        before = path.stat().st_size
        for _ in range(WRITES):
            await db.write(_fill)
        # The writer leaves copying to the checkpointer up to the backstop.
        assert await db.write(_autocheckpoint) == checkpoints.BACKSTOP
        written = WRITES * ROWS * 4000
        async with asyncio.timeout(5):
            while True:
                if path.stat().st_size - before >= written:
                    break
                await asyncio.sleep(0.02)
        assert _checkpointers()
    finally:
        db.close()
    assert not _checkpointers()  # it ended with the handle
