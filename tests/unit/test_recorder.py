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


class CountingDb(FakeDb):
    """FakeDb that also tracks how many transactions run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most_at_once = 0

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            return await super().write(fn)
        finally:
            self.running -= 1


async def test_lanes_commit_at_once_and_keep_a_key_to_one_lane() -> None:
    db = CountingDb()
    recorder = Recorder(cast(Database, db), lanes=3)
    keys = [f"merchant-{k}" for k in range(12)]
    results = await asyncio.gather(
        *(recorder.write(_outcome, n, key=keys[n % 12]) for n in range(60))
    )
    await recorder.close()
    assert results == [n * 10 for n in range(60)]
    assert db.most_at_once > 1  # lanes overlap
    # Each transaction holds the outcomes of one lane: never two keys of different lanes.
    lane_of = {k: recorder._lane(k) for k in keys}
    for t in db.transactions:
        assert len({id(lane_of[keys[n % 12]]) for n in t}) == 1


async def test_one_lane_commits_one_transaction_at_a_time() -> None:
    db = CountingDb()
    recorder = Recorder(cast(Database, db))
    await asyncio.gather(*(recorder.write(_outcome, n, key=f"m{n}") for n in range(30)))
    await recorder.close()
    assert db.most_at_once == 1
