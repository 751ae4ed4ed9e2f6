"""`serve` at start-up and readiness decide alike whether this version runs on the database's
schema, on both backends: at its head, yes; older, no (migrate first); newer and declared
compatible (only expand migrations since), yes; newer after a contract migration, or newer and
undeclared, no. The newer schemas are synthetic: revisions this build does not know, written
into the version table with (or without) their declared compatibility."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from broadcaster.app import IncompatibleSchema, NeedsMigration, prepare_schema
from broadcaster.services.readiness import Readiness
from broadcaster.store import migrate
from broadcaster.store.database import Database
from tests.conftest import BACKENDS
from tests.databases import fresh_database


@pytest.fixture(scope="module", params=BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated database of its own: the tests move its version table about."""
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        yield db
        db.close()


@pytest.fixture
def at(database: Database) -> Iterator[Database]:
    """The database, put back at this build's head afterwards."""
    yield database
    pretend(database, migrate.head_revision(database.engine), None)


def pretend(db: Database, revision: str | None, oldest_compatible: str | None) -> None:
    """Put the version table at `revision`, declaring it compatible from `oldest_compatible`
    (None: no declaration)."""
    with db.writing() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        conn.execute(text("DELETE FROM schema_compatibility WHERE revision = :r"), {"r": revision})
        if oldest_compatible is not None:
            conn.execute(
                text("INSERT INTO schema_compatibility VALUES (:r, :o)"),
                {"r": revision, "o": oldest_compatible},
            )


async def _schema(db: Database) -> str:
    readiness = Readiness(db, migrate.head_revision(db.engine), migrate.known_revisions(db.engine))
    return (await readiness.check()).schema


async def test_at_its_own_head_it_runs(at: Database) -> None:
    prepare_schema(at)
    assert await _schema(at) == "ok"


async def test_at_an_older_known_schema_it_asks_for_migrate(at: Database) -> None:
    pretend(at, "0020", None)
    head = migrate.head_revision(at.engine)
    expected = (
        f"the database is at schema 0020, this version needs {head}: "
        "run `broadcaster migrate` first"
    )
    with pytest.raises(NeedsMigration) as e:
        prepare_schema(at)
    assert str(e.value) == expected
    assert await _schema(at) == expected


async def test_at_a_newer_schema_declared_compatible_it_runs_and_says_so(
    at: Database, caplog: pytest.LogCaptureFixture
) -> None:
    head = migrate.head_revision(at.engine)
    pretend(at, "9001", "0014")  # expand migrations only since 0014, which this build knows
    with caplog.at_level(logging.INFO, logger="broadcaster.app"):
        prepare_schema(at)
    said = [r.getMessage() for r in caplog.records if r.name == "broadcaster.app"]
    assert len(said) == 1 and "9001" in said[0] and f"{head};" in said[0], said
    assert await _schema(at) == "ok"


async def test_at_a_newer_schema_after_a_contract_migration_it_refuses(at: Database) -> None:
    head = migrate.head_revision(at.engine)
    pretend(at, "9002", "9001")  # 9001 was a contract migration: this build does not know it
    with pytest.raises(IncompatibleSchema) as e:
        prepare_schema(at)
    said = str(e.value)
    assert "9002" in said and f"schema {head}" in said and "from schema 9001" in said
    assert await _schema(at) == said


async def test_at_an_unknown_undeclared_schema_it_refuses(at: Database) -> None:
    head = migrate.head_revision(at.engine)
    pretend(at, "9003", None)
    with pytest.raises(IncompatibleSchema) as e:
        prepare_schema(at)
    said = str(e.value)
    assert "9003" in said and f"schema {head}" in said and "declares no compatibility" in said
    assert await _schema(at) == said


def test_serve_exits_2_naming_both_schemas(tmp_path: Path) -> None:
    """The whole command: one line on stderr, exit status 2 (SQLite: the rule is the same)."""
    with fresh_database("sqlite", tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        pretend(db, "9002", "9001")
        db.close()
    done = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli", "serve", "--database-url", url],
        env={
            **os.environ,
            "BROADCASTER_SECRET_KEY": "k" * 32,
            "BROADCASTER_AUTH_TOKENS": "t" * 24 + "=*",
            "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
            "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
            "BROADCASTER_PLUGINS": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "schema 9002" in done.stderr and f"schema {migrate.head_revision(db.engine)}" in done.stderr
    )
