"""Alembic environment: runs against the engine handed over in the config's attributes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

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
        context.configure(
            connection=conn,
            target_metadata=metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


run()
