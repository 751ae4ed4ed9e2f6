"""Group commit of batch outcomes: outcomes queued while a transaction is written share the next
one; each caller gets its own result; one failing outcome does not fail the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from broadcaster.dispatch.recorder import Recorder
from broadcaster.store.database import Database


class FakeDb:
    """Runs each transaction after a short pause; records which writes shared one."""

    def __init__(self) -> None:
        self.transactions: list[list[Any]] = []

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        conn: list[Any] = []
        await asyncio.sleep(0.01)
        result = fn(conn)  # raises: the whole transaction rolls back
        self.transactions.append(conn)
        return result


def _outcome(conn: list[Any], n: int) -> int:
    if n < 0:
        raise ValueError("bad outcome")
    conn.append(n)
    return n * 10


async def test_outcomes_arriving_together_share_a_transaction() -> None:
    db = FakeDb()
    recorder = Recorder(cast(Database, db))
    results = await asyncio.gather(*(recorder.write(_outcome, n) for n in range(20)))
    await recorder.close()
    assert results == [n * 10 for n in range(20)]
    assert sorted(n for t in db.transactions for n in t) == list(range(20))
    assert len(db.transactions) < 20  # grouped


async def test_a_failing_outcome_is_isolated() -> None:
    db = FakeDb()
    recorder = Recorder(cast(Database, db))
    results = await asyncio.gather(
        *(recorder.write(_outcome, n) for n in (1, -1, 2)), return_exceptions=True
    )
    await recorder.close()
    assert results[0] == 10 and results[2] == 20
    assert isinstance(results[1], ValueError)
    assert sorted(n for t in db.transactions for n in t) == [1, 2]


async def test_groups_are_bounded() -> None:
    db = FakeDb()
    recorder = Recorder(cast(Database, db), most=4)
    await asyncio.gather(*(recorder.write(_outcome, n) for n in range(10)))
    await recorder.close()
    assert max(len(t) for t in db.transactions) <= 4


def _many(conn: list[Any], items: list[int]) -> list[int]:
    if any(n < 0 for n in items):
        raise ValueError("bad outcome")
    conn.append(tuple(items))
    return [n * 100 for n in items]


async def test_outcomes_of_one_kind_are_written_together() -> None:
    db = FakeDb()
    recorder = Recorder(cast(Database, db))
    results = await asyncio.gather(
        *(recorder.write_together(_many, n) for n in range(6)), recorder.write(_outcome, 7)
    )
    assert results == [0, 100, 200, 300, 400, 500, 70]
    calls = [w for t in db.transactions for w in t if isinstance(w, tuple)]
    assert sorted(n for call in calls for n in call) == list(range(6))
    assert len(calls) < 6  # items shared calls
    # One bad item fails alone.
    results = await asyncio.gather(
        *(recorder.write_together(_many, n) for n in (-1, 8)), return_exceptions=True
    )
    await recorder.close()
    assert isinstance(results[0], ValueError) and results[1] == 800
