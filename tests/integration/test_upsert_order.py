"""Concurrent upserts of the same contacts, given in opposite orders, lock them in one order:
PostgreSQL never has to abort one of them to break a deadlock."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import OperationalError

from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ContactImport, FollowerState
from broadcaster.store import channels, contacts
from broadcaster.store.clock import from_us
from broadcaster.store.database import DEADLOCK, Database


def test_opposite_orders_do_not_deadlock(database_url: str, merchant: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time")
    db = Database.from_url(database_url, threads=2)
    channel = new_id()
    with db.writing() as conn:
        account = (AccountTier.VERIFIED, channel, "", "", "")
        channels.create(conn, merchant, channel, "fake", account, "x", from_us(1))
    items = [
        ContactImport(
            f"U{n:04d}", f"name {n}", "", FollowerState.FOLLOWING, None, False, None, from_us(1)
        )
        for n in range(300)
    ]
    deadlocks: list[OperationalError] = []
    start = threading.Barrier(2)

    def upsert(order: list[ContactImport]) -> None:
        for round_ in range(10):
            start.wait()
            try:
                with db.engine.connect() as conn, conn.begin():  # no retry: see every abort
                    contacts.merge(conn, merchant, channel, order, from_us(2 + round_))
            except OperationalError as e:
                if getattr(e.orig, "sqlstate", None) != DEADLOCK:
                    raise
                deadlocks.append(e)

    try:
        threads = [threading.Thread(target=upsert, args=(o,)) for o in (items, items[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        db.close()
    assert deadlocks == []
