"""Expand and contract, held to what the migrations do: each expand migration only adds (no
table or column removed or changed, every column it adds to a table is nullable or has a
default), on a real database; the database records each revision's oldest compatible one; and
two migrations started at once on an empty PostgreSQL database take turns instead of racing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from broadcaster.store import migrate
from broadcaster.store.database import Database
from tests.databases import _libpq, fresh_database, fresh_postgres

Shape = dict[str, dict[str, tuple[str, bool, bool]]]  # table → column → (type, nullable, default)


def _shape(engine: Engine) -> Shape:
    found = inspect(engine)
    return {
        table: {
            c["name"]: (str(c["type"]), bool(c["nullable"]), c.get("default") is not None)
            for c in found.get_columns(table)
        }
        for table in found.get_table_names()
        if table != "alembic_version"
    }


def _removed_or_changed(before: Shape, after: Shape) -> list[str]:
    """What a version running on `before` would miss on `after`."""
    problems = []
    for table, columns in before.items():
        if table not in after:
            problems.append(f"table {table} removed")
            continue
        for name, (kind, nullable, _) in columns.items():
            now = after[table].get(name)
            if now is None:
                problems.append(f"{table}.{name} removed")
            elif now[0] != kind or now[1] != nullable:
                problems.append(f"{table}.{name} changed from {kind, nullable} to {now[:2]}")
        for name, (_, nullable, default) in after[table].items():
            if name not in columns and not (nullable or default):
                problems.append(f"{table}.{name} added NOT NULL without a default")
    return problems


def _scripts(engine: Engine) -> list[Any]:
    scripts = ScriptDirectory.from_config(migrate.alembic_config(engine))
    return list(reversed(list(scripts.walk_revisions())))


def test_expand_migrations_only_add(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        db = Database.from_url(url, threads=1)
        flagged: dict[str, list[str]] = {}
        before: Shape = {}
        for script in _scripts(db.engine):
            migrate.upgrade(db.engine, script.revision)
            after = _shape(db.engine)
            problems = _removed_or_changed(before, after)
            if problems:
                flagged[script.revision] = problems
            before = after
        db.close()
    kinds = {s.revision: migrate.kind_of(s.module, "sqlite") for s in _scripts(db.engine)}
    assert {r for r in flagged if kinds[r] != migrate.CONTRACT} == set(), flagged
    assert "0008" in flagged  # the check sees a contract migration's removals


def test_each_revision_records_its_oldest_compatible_one(db: Database) -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config(db.engine))
    with db.engine.connect() as conn:
        recorded: dict[str, str] = dict(
            conn.execute(text("SELECT * FROM schema_compatibility")).all()
        )
    assert recorded == migrate.oldest_compatible(scripts, db.engine.dialect.name)
    head = migrate.head_revision(db.engine)
    # 0025 moved SQLite's batch recipients to a table of their own: a contract there only.
    oldest = "0025" if db.engine.dialect.name == "sqlite" else "0014"
    assert head is not None and recorded[head] == oldest


@pytest.mark.postgres
def test_two_migrations_at_once_on_an_empty_postgresql_database(tmp_path: Path) -> None:
    """As two replicas starting together on an empty database (`serve` migrates it), or
    `broadcaster migrate` run twice: each waits for the migration lock, which the test holds
    until both are waiting; then both succeed, one after the other, and the schema is made
    once. (Processes: alembic runs one migration at a time per process.)"""
    with fresh_postgres() as url:
        holder = psycopg.connect(_libpq(url), autocommit=True)
        try:
            holder.execute("SELECT pg_advisory_lock(%s)", (migrate.MIGRATION_LOCK,))
            env = {**os.environ, "BROADCASTER_SECRET_KEY": "k" * 32}
            command = [sys.executable, "-m", "broadcaster.cli", "migrate", "--database-url", url]
            runs = [
                subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)
            ]
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            deadline = time.monotonic() + 60
            while (found := holder.execute(waiting).fetchone()) is None or found[0] < 2:
                assert time.monotonic() < deadline, "the migrations did not wait for the lock"
                assert all(r.poll() is None for r in runs), "a migration ran without the lock"
                time.sleep(0.05)
            holder.execute("SELECT pg_advisory_unlock(%s)", (migrate.MIGRATION_LOCK,))
            done = [r.communicate(timeout=120) for r in runs]
            assert [r.returncode for r in runs] == [0, 0], done
            versions = holder.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            holder.close()
        db = Database.from_url(url, threads=1)
        assert versions == [(migrate.head_revision(db.engine),)]
        db.close()
