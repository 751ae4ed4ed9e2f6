"""Alembic migrations, run from code: `broadcaster migrate` and `serve` on an empty database.

Each migration declares its `kind`: "expand" when it only adds (tables, nullable or defaulted
columns, indexes), so the version before it runs on the schema it leaves; "contract" when it
removes, renames or changes what an earlier version uses. A contract migration runs on no
earlier version's code, unless it declares `compatible_with`: the revision of the release that
already stopped using what it removes (the first of the two releases a removal takes), which
still runs on it. From those, every revision has an oldest compatible revision; the migration
environment records it per revision in `schema_compatibility`, where a version that does not
know the database's revision reads whether it may run on it (store.compatibility).

A migration whose kind depends on the database declares it per dialect (`kind = {"sqlite":
"contract", "postgresql": "expand"}`): one that changes where SQLite keeps data while
PostgreSQL's layout, and so its rolling deploys, stay as they were.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, delete, insert, inspect

from broadcaster.store.tables import schema_compatibility

_SCRIPTS = Path(__file__).parent / "migrations"
EXPAND = "expand"
CONTRACT = "contract"
KINDS = (EXPAND, CONTRACT)
# The PostgreSQL advisory lock migrations run under (any fixed number: "broadcas" in ASCII).
MIGRATION_LOCK = int.from_bytes(b"broadcas", "big")


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


def kind_of(module: object, dialect: str) -> object:
    """A migration module's kind on `dialect`: its `kind`, or that dialect's entry of it."""
    kind = getattr(module, "kind", None)
    return kind.get(dialect) if isinstance(kind, dict) else kind


def oldest_compatible(scripts: ScriptDirectory, dialect: str) -> dict[str, str]:
    """Per revision, the oldest revision whose version runs on it, on `dialect`: walking back
    over expand migrations, the first contract one met (or the earlier revision it declares
    itself `compatible_with`). A migration without a valid `kind`, or compatible with a
    revision that is not before it, fails here (and so fails its tests and `migrate`)."""
    chain = list(reversed(list(scripts.walk_revisions())))  # oldest first; the chain is linear
    found: dict[str, str] = {}
    oldest = None
    for script in chain:
        kind = kind_of(script.module, dialect)
        if kind not in KINDS:
            raise ValueError(
                f"migration {script.revision} declares kind={kind!r} on {dialect}: "
                f"{EXPAND!r} or {CONTRACT!r} is required"
            )
        if kind == CONTRACT or oldest is None:
            oldest = getattr(script.module, "compatible_with", None) or script.revision
            if oldest != script.revision and oldest not in found:
                raise ValueError(
                    f"migration {script.revision} declares compatible_with={oldest!r}: "
                    "an earlier revision is required"
                )
        found[script.revision] = oldest
    return found


def record_compatibility(conn: Connection, scripts: ScriptDirectory, current: str | None) -> None:
    """Rewrite `schema_compatibility` for the revisions up to `current` (the migration
    environment calls this once a run's migrations are applied, in their transaction). Before
    the table exists, there is nothing to write."""
    if current is None or not inspect(conn).has_table(schema_compatibility.name):
        return
    compatible = oldest_compatible(scripts, conn.dialect.name)
    applied = [s.revision for s in scripts.iterate_revisions(current, "base")]
    conn.execute(delete(schema_compatibility))
    conn.execute(
        insert(schema_compatibility),
        [{"revision": r, "oldest_compatible": compatible[r]} for r in applied],
    )


def declared_compatibility(conn: Connection, revision: str) -> str | None:
    """The oldest revision the database declares compatible with its `revision`, or None
    where it declares nothing (no such row, or no table: a schema from before it existed, or
    of another lineage)."""
    if not inspect(conn).has_table(schema_compatibility.name):
        return None
    found = conn.execute(
        schema_compatibility.select()
        .with_only_columns(schema_compatibility.c.oldest_compatible)
        .where(schema_compatibility.c.revision == revision)
    ).scalar()
    return None if found is None else str(found)
