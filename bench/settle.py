"""A seeded benchmark database brought to the state a merchant's would be in by the time it is
measured."""

from __future__ import annotations

from broadcaster.store.database import Database


def settle(db: Database) -> None:
    """Vacuum and analyze, as autovacuum would have done by then: on PostgreSQL the visibility
    map is set, the rows' hint bits are written, and the planner has the tables' statistics (no
    autovacuum of the fresh rows then starts beside what is measured); SQLite analyzes."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if db.dialect == "postgresql" else "ANALYZE")
