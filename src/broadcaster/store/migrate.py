"""Alembic migrations, run from code: `broadcaster migrate` and `serve` on an empty database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def known_revisions(engine: Engine) -> frozenset[str]:
    """Every revision this build's migrations know; a database at another one was migrated by
    a newer version."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    return frozenset(script.revision for script in scripts.walk_revisions())


def schema_version(conn: Connection) -> str | None:
    """The revision the database is at, in one statement (a database without the schema
    fails it: readiness calls this on a database `serve` has checked)."""
    found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if found is None else str(found)
