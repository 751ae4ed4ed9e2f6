"""Alembic environment: runs against the engine handed over in the config's attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from broadcaster.store.migrate import MIGRATION_LOCK, record_compatibility
from broadcaster.store.tables import metadata

config = context.config


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass an engine or set sqlalchemy.url")
    return create_engine(url)


def run() -> None:
    with _engine().connect() as conn:
        locked = conn.dialect.name == "postgresql"
        if locked:
            # Replicas starting at once on an empty database, or `migrate` run twice, take
            # turns: the later one reads the revision the earlier one left, and has less to do.
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
            conn.commit()
        try:
            context.configure(
                connection=conn,
                target_metadata=metadata,
                render_as_batch=conn.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
                migration = context.get_context()
                record_compatibility(conn, context.script, migration.get_current_revision())
            conn.commit()
        finally:
            if locked:  # the connection goes back to the pool: the lock must not go with it
                conn.rollback()
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
                conn.commit()


run()
