"""A transaction PostgreSQL aborted to break a deadlock did nothing, so Database runs it again;
any other database error is the caller's."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from broadcaster.store.database import DEADLOCK, Database


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _failing(times: int, sqlstate: str) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn(conn: Connection) -> int:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("UPDATE …", {}, _Orig(sqlstate))
        return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

    return calls, fn


async def test_a_deadlocked_write_runs_again(db: Database) -> None:
    calls, fn = _failing(2, DEADLOCK)
    assert await db.write(fn) == 42  # type: ignore[arg-type]
    assert len(calls) == 3


async def test_a_write_that_keeps_deadlocking_fails(db: Database) -> None:
    calls, fn = _failing(5, DEADLOCK)
    with pytest.raises(OperationalError):
        await db.write(fn)  # type: ignore[arg-type]
    assert len(calls) == 3


async def test_other_errors_are_not_retried(db: Database) -> None:
    calls, fn = _failing(1, "53300")  # too many connections
    with pytest.raises(OperationalError):
        await db.write(fn)  # type: ignore[arg-type]
    assert len(calls) == 1
