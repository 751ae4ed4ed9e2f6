"""The migrations build exactly the schema the tables declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from broadcaster.store import migrate
from broadcaster.store.database import Database
from broadcaster.store.tables import metadata


def test_migrated_schema_matches_tables(db: Database) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
