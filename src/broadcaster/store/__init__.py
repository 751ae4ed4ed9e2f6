"""Persistence: SQLModel tables, repositories and Alembic migrations, on SQLite and PostgreSQL.

Control-plane rows go through plain SQLAlchemy Core statements; bulk paths are single set-based
statements fed by one JSON (SQLite) or JSON/array (PostgreSQL) parameter, never a row at a time.
"""
