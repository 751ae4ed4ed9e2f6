"""Test databases: a migrated SQLite file, and a fresh PostgreSQL database per test run.

PostgreSQL is found at BROADCASTER_TEST_POSTGRES_URL (default: the local server with trust auth).
Where none answers, PostgreSQL tests skip with the reason, unless BROADCASTER_REQUIRE_POSTGRES=1
(as in CI), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "BROADCASTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("BROADCASTER_REQUIRE_POSTGRES") == "1"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(_libpq(ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL at {make_url(ADMIN_URL).render_as_string()}: {e}".strip()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new empty database for this test run, dropped afterwards."""
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required here (BROADCASTER_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(reason)
    name = f"broadcaster_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'broadcaster.db'}"
    else:
        with fresh_postgres() as url:
            yield url
