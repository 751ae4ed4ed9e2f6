"""Readiness follows the database, the schema and draining: ready → the database cut → not
ready → restored → ready again; draining → not ready for good; a schema this build does not
run on (older, or newer after a contract migration) → not ready, saying what it found.
Listeners (the gRPC health service) hear each change once."""

from __future__ import annotations

import pytest

from broadcaster.services.readiness import Readiness
from broadcaster.store import migrate
from broadcaster.store.database import Database
from tests.pgproxy import proxied


def _readiness(
    db: Database, told: list[bool], expected: str | None = None, known: frozenset[str] = frozenset()
) -> Readiness:
    readiness = Readiness(db, expected or migrate.head_revision(db.engine), known, max_age=0.0)

    async def listen(ready: bool) -> None:
        told.append(ready)

    readiness.on_change(listen)
    return readiness


async def test_ready_until_draining(db: Database) -> None:
    told: list[bool] = []
    readiness = _readiness(db, told)
    report = await readiness.check()
    assert report.ready and report.as_dict() == {
        "ready": True,
        "database": "ok",
        "schema": "ok",
        "dispatcher": "ok",
        "schema_version": migrate.head_revision(db.engine),
    }
    await readiness.check()
    await readiness.drain()
    report = await readiness.check()
    assert not report.ready and report.dispatcher == "draining"
    assert (report.database, report.schema) == ("ok", "ok")
    assert told == [True, False]  # each change once


async def test_a_schema_older_than_this_build_needs(db: Database) -> None:
    """The database is at a revision this build knows, before the one it needs: it was not
    migrated yet (`broadcaster migrate`)."""
    told: list[bool] = []
    at = migrate.head_revision(db.engine)
    assert at is not None
    report = await _readiness(db, told, expected="9999", known=frozenset({at})).check()
    assert not report.ready and report.database == "ok"
    assert report.schema == (
        f"the database is at schema {at}, this version needs 9999: run `broadcaster migrate` first"
    )
    assert told == [False]


async def test_a_newer_schema_declared_compatible(db: Database) -> None:
    """A newer version migrated the database with expand migrations only (the first step of a
    rolling upgrade): replicas of this version stay ready until they are replaced. (The
    database's revisions since 0014 are all expand ones on PostgreSQL: a build at 0016 runs on
    them.)"""
    if db.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite 0025 is a contract migration: no build before it runs on the head")
    told: list[bool] = []
    at = migrate.head_revision(db.engine)
    known = frozenset({"0014", "0015", "0016"})
    report = await _readiness(db, told, expected="0016", known=known).check()
    assert report.ready and report.schema == "ok" and report.schema_version == at
    assert told == [True]


async def test_a_newer_schema_after_a_contract_migration(db: Database) -> None:
    """0014 was a contract migration (and on SQLite, 0025): a build at 0013 does not run on
    what came after it."""
    told: list[bool] = []
    at = migrate.head_revision(db.engine)
    oldest = "0025" if db.engine.dialect.name == "sqlite" else "0014"
    report = await _readiness(db, told, expected="0013", known=frozenset({"0013"})).check()
    assert not report.ready and report.schema_version == at
    assert f"at schema {at}, which runs versions from schema {oldest} on" in report.schema
    assert told == [False]


async def test_not_ready_while_the_database_is_away(database_url: str) -> None:
    told: list[bool] = []
    if not database_url.startswith("postgresql"):
        pytest.skip("a database outage is a server's: SQLite has none")
    with proxied(database_url) as (proxy, url):
        db = Database.from_url(url, threads=1)
        try:
            readiness = _readiness(db, told)
            assert (await readiness.check()).ready
            proxy.cut()
            report = await readiness.check()
            assert not report.ready
            assert (report.database, report.dispatcher) == ("unreachable", "ok")
            proxy.restore()
            assert (await readiness.check()).ready
            assert told == [True, False, True]
        finally:
            db.close()


async def test_draining_is_seen_at_once_by_probes_of_a_fresh_answer(db: Database) -> None:
    readiness = Readiness(db, migrate.head_revision(db.engine), max_age=60.0)
    first = await readiness.check()
    await readiness.drain()  # a change the replica makes is seen at once, fresh or not
    assert first.ready and not (await readiness.check()).ready


async def test_a_listener_added_later_is_told_on_the_next_check(db: Database) -> None:
    """(The gRPC health service listens from when its server starts, which may be after a
    probe already checked.)"""
    readiness = Readiness(db, migrate.head_revision(db.engine), max_age=60.0)
    assert (await readiness.check()).ready
    told: list[bool] = []

    async def listen(ready: bool) -> None:
        told.append(ready)

    readiness.on_change(listen)
    await readiness.check()
    assert told == [True]
