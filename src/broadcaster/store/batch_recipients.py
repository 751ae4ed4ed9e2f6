"""A batch's recipients, stored on the batch ("Recipients per batch" in docs/architecture.md).

The snapshot writes each batch with its recipients as one JSON array of `[contact id, external
id]` pairs (`batches.recipients`): recipient `i` of the array is seq `first_seq + i`. A broadcast
of 100,000 recipients is 200 rows, not 100,000, which is what lets many merchants' snapshots and
sends share one database. A recipient resolved one by one (refused, not sent, unknown) gets a
row of its own in `deliveries`, with its outcome, which overrides "as its batch"; so do the
recipients a limit left out, numbered after the last batch.

Batches written before this layout (state OPEN_ROWS while open, `recipients` NULL) keep their
recipients as rows of `deliveries`, PENDING (stored 0) while "as their batch". Every read here
takes both, so broadcasts snapshotted by an earlier release finish and stay readable.

The SQL pieces are written once per dialect: `json_each` on SQLite, `json_array_elements` on
PostgreSQL. Statements use `%(name)s` parameters (bulk.named turns them into `:name`).
"""

from __future__ import annotations

import functools
import json

# Batch states: open (recipients on the batch), done, and open with its recipients as rows of
# `deliveries` (batches written before this layout; a release before it claims only those, so
# it never takes a batch whose recipients it could not read).
OPEN, DONE, OPEN_ROWS = 2, 1, 0
# SQL: the batch (`batches` as `alias`) is open, in either layout; the partial index of open
# batches has this very condition, so both databases may read it.
IS_OPEN = "state <> 1"


def is_open(alias: str) -> str:
    return f"{alias}.{IS_OPEN}"


def aggregate(dialect: str, contact: str, external: str) -> str:
    """SQL aggregate: the group's recipients as the stored JSON array."""
    if dialect == "postgresql":
        return f"CAST(json_agg(json_build_array({contact}, {external})) AS TEXT)"
    return f"json_group_array(json_array({contact}, {external}))"


def new_key(dialect: str) -> str:
    """SQL for a fresh idempotency key per row: a random (version 4) UUID, as text."""
    if dialect == "postgresql":
        return "CAST(gen_random_uuid() AS VARCHAR)"
    h = "lower(hex(randomblob({})))"
    return (
        f"{h.format(4)} || '-' || {h.format(2)} || '-4' || substr({h.format(2)}, 2) || '-'"
        f" || substr('89ab', 1 + abs(random()) % 4, 1) || substr({h.format(2)}, 2) || '-'"
        f" || {h.format(6)}"
    )


def _expanded(dialect: str) -> tuple[str, str, str, str]:
    """(join, seq, contact id, external id): SQL that expands the recipients of batch `b`."""
    if dialect == "postgresql":
        return (
            "CROSS JOIN LATERAL json_array_elements(CAST(b.recipients AS json))"
            " WITH ORDINALITY AS e(v, i)",
            "b.first_seq + e.i - 1",
            "(e.v->>0)",
            "(e.v->>1)",
        )
    return (
        "JOIN json_each(b.recipients) AS e",
        "b.first_seq + e.key",
        "json_extract(e.value, '$[0]')",
        "json_extract(e.value, '$[1]')",
    )


@functools.cache
def as_batch(dialect: str) -> str:
    """SQL: the recipients of broadcast `%(b)s` with seq in [`%(lo)s`, `%(hi)s`] that are "as
    their batch" (no outcome of their own), as (seq, contact_id, external_id), in either layout.
    The batches are found by number (batch k starts at k times batch 0's size), one index
    range read; the range is expected to lie within one run of batches, as an outbox row's or a
    claim's does."""
    join, seq, contact, external = _expanded(dialect)
    return (
        "SELECT d.seq, d.contact_id, d.external_id FROM deliveries d"
        " WHERE d.broadcast_id = %(b)s AND d.seq BETWEEN %(lo)s AND %(hi)s AND d.outcome = 0"
        " UNION ALL SELECT x.seq, x.contact_id, x.external_id FROM"
        f" (SELECT {seq} AS seq, {contact} AS contact_id, {external} AS external_id"
        " FROM batches b0 JOIN batches b ON b.broadcast_id = b0.broadcast_id"
        " AND b.batch BETWEEN %(lo)s / b0.size AND %(hi)s / b0.size"
        f" {join}"
        " WHERE b0.broadcast_id = %(b)s AND b0.batch = 0 AND b.recipients IS NOT NULL) x"
        " WHERE x.seq BETWEEN %(lo)s AND %(hi)s AND x.seq NOT IN"
        " (SELECT r.seq FROM deliveries r WHERE r.broadcast_id = %(b)s"
        " AND r.seq BETWEEN %(lo)s AND %(hi)s)"
    )


def decode(stored: str) -> list[tuple[str, str]]:
    """A batch's stored recipients: (contact id, external id) in seq order."""
    return [(c, e) for c, e in json.loads(stored)]
