"""Composition root: the only place that wires config, database, services and servers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from broadcaster.api.server import RunningServer, Services, start_server
from broadcaster.config import Config
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.store import migrate
from broadcaster.store.database import Database

log = logging.getLogger(__name__)


class NeedsMigration(RuntimeError):
    """The database schema is older than this version of the service."""


def open_database(url: str) -> Database:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return Database.from_url(url)


def prepare_schema(db: Database) -> None:
    """Migrate an empty database; refuse to run on one that an older version left behind."""
    current = migrate.current_revision(db.engine)
    if current is None:
        log.info("empty database: creating the schema")
        migrate.upgrade(db.engine)
    elif current != migrate.head_revision(db.engine):
        raise NeedsMigration(
            f"the database is at schema {current}, this version needs "
            f"{migrate.head_revision(db.engine)}: run `broadcaster migrate` first"
        )


@dataclass
class App:
    config: Config
    db: Database
    services: Services

    @classmethod
    def build(cls, config: Config) -> App:
        db = open_database(config.database_url)
        ctx = ServiceContext(db)
        return cls(
            config, db, Services(customer_groups=CustomerGroups(ctx), contacts=Contacts(ctx))
        )

    async def start(self, host: str, port: int) -> RunningServer:
        return await start_server(self.services, self.config.tokens(), host, port)

    def close(self) -> None:
        self.db.close()
