"""Whether this version runs on the database's schema: one rule for `serve` at start-up and for
readiness.

- at this version's head: it runs;
- at a revision this version knows, before its head (or no schema): the database was not
  migrated yet: it does not run (`broadcaster migrate` first);
- at a revision it does not know (a newer version migrated): it runs when the database
  declares the revision compatible with this version's head, i.e. only expand migrations came
  since (its oldest compatible revision is one this version knows); it does not run after a
  contract migration, nor on a revision the database declares nothing about.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection

from broadcaster.store import migrate


@dataclass(frozen=True, slots=True)
class Schema:
    """The database's revision and, when it is one this version does not know, the oldest
    revision it declares compatible with it (None: nothing declared)."""

    revision: str | None
    oldest_compatible: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    runs: bool
    newer: bool  # the schema is newer than this version's (runs or not)
    says: str  # one line naming both schemas (empty at this version's own)


def read(conn: Connection, known: Collection[str | None]) -> Schema:
    """The database's schema (which has the version table): one statement, more only at a
    revision not in `known`."""
    return at_revision(conn, migrate.schema_version(conn), known)


def at_revision(conn: Connection, revision: str | None, known: Collection[str | None]) -> Schema:
    if revision is None or revision in known:
        return Schema(revision)
    return Schema(revision, migrate.declared_compatibility(conn, revision))


def judge(found: Schema, head: str | None, known: Collection[str | None]) -> Verdict:
    at = found.revision
    if at == head:
        return Verdict(True, False, "")
    if at in known or at is None:
        return Verdict(
            False,
            False,
            f"the database is at schema {at or '(none)'}, this version needs {head}: "
            "run `broadcaster migrate` first",
        )
    oldest = found.oldest_compatible
    if oldest is None:
        return Verdict(
            False,
            True,
            f"the database is at schema {at}, which this version (schema {head}) does not "
            "know and which declares no compatibility: run the version that migrated it",
        )
    if oldest not in known:
        return Verdict(
            False,
            True,
            f"the database is at schema {at}, which runs versions from schema {oldest} on, "
            f"not this one (schema {head}): a contract migration came since; run a newer version",
        )
    return Verdict(
        True,
        True,
        f"the database is at schema {at}, newer than this version's {head}; only expand "
        f"migrations came since (it runs versions from schema {oldest} on): running on it",
    )
