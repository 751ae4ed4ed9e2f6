"""A process knows how long it spends writing (`broadcaster_db_write_seconds`, from
metrics.watch_database): each write transaction adds the time it held its connection, one that
fails too; reads add nothing. On SQLite its rate is the share of time the one writer is busy."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Connection, text

from broadcaster.metrics import Metrics
from broadcaster.store.database import Database

HELD = 0.05  # seconds each transaction below holds its connection


def _written(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("broadcaster_db_write_seconds_total") or 0.0


def _hold(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))
    time.sleep(HELD)


def _fail(conn: Connection) -> None:
    _hold(conn)
    raise RuntimeError("refused")


async def test_write_transactions_add_their_time_and_reads_nothing(db: Database) -> None:
    metrics = Metrics(process=False)
    metrics.watch_database(db)
    await db.read(_hold)
    after_read = _written(metrics)
    await db.write(_hold)
    after_write = _written(metrics)
    with pytest.raises(RuntimeError):
        await db.write(_fail)
    after_failed = _written(metrics)
    assert after_read == 0.0
    assert HELD <= after_write < 10 * HELD
    assert HELD <= after_failed - after_write < 10 * HELD
