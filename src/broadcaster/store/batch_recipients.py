"""A batch's recipients, stored on the batch ("Recipients per batch" in docs/architecture.md).

The snapshot writes each batch with its recipients as two JSON arrays of the same length,
`contact_ids` and `external_ids` (where they are kept: below); recipient `i` of the batch is seq
`first_seq + i`. A broadcast of 100,000 recipients is 200 rows, not 100,000, which is what lets
many merchants' snapshots and sends share one database. Two flat arrays rather than one of
pairs: the reads that need only one of them (a claim, the external ids; the Message Center
feed and the conversations a batch opens, the contact ids) expand plain strings. A recipient
resolved one by one (refused, not sent, unknown) gets a row of its own in `deliveries`, with
its outcome, which overrides "as its batch"; so do the recipients a limit left out, numbered
after the last batch.

The snapshot also notes on each batch the seqs of its recipients whose contact had a
conversation (`talked`, written by the function of that name): recording the delivered batch opens
conversations for the others without reading their contacts.

Where the arrays live depends on the database (`with_arrays`). PostgreSQL keeps them on the
batch row: an UPDATE there writes a new version of the row's own part and leaves out-of-line
values where they are. SQLite writes an updated row whole, overflow pages and all, so leasing
and closing a batch holding about 37 kB of arrays wrote ten pages each time (alone, 1,600
batches leased and closed: 0.67 CPU-s against 0.14 with the arrays elsewhere); there they are
a row of `batch_recipients`, written once by the snapshot.

Batches written before this layout (state OPEN_ROWS while open, the arrays NULL) keep their
recipients as rows of `deliveries`, PENDING (stored 0) while "as their batch". Every read here
takes both, so broadcasts snapshotted by an earlier release finish and stay readable.

The SQL pieces are written once per dialect: `json_each` on SQLite, `json_array_elements_text`
on PostgreSQL. Statements use `%(name)s` parameters (bulk.named turns them into `:name`).
"""

from __future__ import annotations

import functools
import json

# Batch states: open (recipients on the batch), done, and open with its recipients as rows of
# `deliveries` (batches written before this layout; a release before it claims only those, so
# it never takes a batch whose recipients it could not read).
OPEN, DONE, OPEN_ROWS = 2, 1, 0
# SQL: the batch is open, in either layout. The partial index of open batches has this very
# condition, so both databases may read it: every query of open batches spells it so.
IS_OPEN = "state <> 1"


def with_arrays(dialect: str) -> tuple[str, str]:
    """(FROM item, alias): the batches as `b`, and the alias whose `contact_ids`,
    `external_ids` and `talked` are each batch's arrays (NULL: a batch of the earliest layout,
    its recipients rows of `deliveries`)."""
    if dialect == "postgresql":
        return "batches b", "b"
    return (
        "batches b LEFT JOIN batch_recipients a"
        " ON a.broadcast_id = b.broadcast_id AND a.batch = b.batch",
        "a",
    )


def aggregate(dialect: str, column: str) -> str:
    """SQL aggregate: the group's values of `column` as a stored JSON array. Two of them in one
    GROUP BY see the same rows in the same order, so their arrays line up."""
    if dialect == "postgresql":
        return f"CAST(json_agg({column}) AS TEXT)"
    return f"json_group_array({column})"


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


def _expanded(dialect: str, externals: bool) -> tuple[str, str, str, str]:
    """(join, seq, contact id, external id): SQL that expands the recipients of batch `b`
    (its arrays on `with_arrays`' alias); the external id only if `externals` (else NULL)."""
    if dialect == "postgresql":
        if not externals:
            return (
                "CROSS JOIN LATERAL json_array_elements_text(CAST(b.contact_ids AS json))"
                " WITH ORDINALITY AS e(contact_id, i)",
                "b.first_seq + e.i - 1",
                "e.contact_id",
                "NULL",
            )
        return (
            "CROSS JOIN LATERAL ROWS FROM (json_array_elements_text(CAST(b.contact_ids AS json)),"
            " json_array_elements_text(CAST(b.external_ids AS json)))"
            " WITH ORDINALITY AS e(contact_id, external_id, i)",
            "b.first_seq + e.i - 1",
            "e.contact_id",
            "e.external_id",
        )
    # SQLite pairs the arrays by index: the same array's parse is kept for the statement.
    external = "json_extract(a.external_ids, '$[' || e.key || ']')" if externals else "NULL"
    return ("JOIN json_each(a.contact_ids) AS e", "b.first_seq + e.key", "e.value", external)


@functools.cache
def as_batch(dialect: str, externals: bool = False) -> str:
    """SQL: the recipients of broadcast `%(b)s` with seq in [`%(lo)s`, `%(hi)s`] that are "as
    their batch" (no outcome of their own), as (seq, contact_id, external_id), in either layout;
    external_id only if `externals`. The batches are found by number (batch k starts at k times
    batch 0's size), one index range read; the range is expected to lie within one run of
    batches, as an outbox row's or a claim's does."""
    join, seq, contact, external = _expanded(dialect, externals)
    batches, arrays = with_arrays(dialect)
    return (
        "SELECT d.seq, d.contact_id, d.external_id FROM deliveries d"
        " WHERE d.broadcast_id = %(b)s AND d.seq BETWEEN %(lo)s AND %(hi)s AND d.outcome = 0"
        " UNION ALL SELECT x.seq, x.contact_id, x.external_id FROM"
        f" (SELECT {seq} AS seq, {contact} AS contact_id, {external} AS external_id"
        f" FROM {batches} {join}"
        f" WHERE b.broadcast_id = %(b)s AND {arrays}.contact_ids IS NOT NULL AND b.batch BETWEEN"
        " %(lo)s / (SELECT b0.size FROM batches b0 WHERE b0.broadcast_id = %(b)s"
        " AND b0.batch = 0) AND %(hi)s / (SELECT b0.size FROM batches b0"
        " WHERE b0.broadcast_id = %(b)s AND b0.batch = 0)) x"
        " WHERE x.seq BETWEEN %(lo)s AND %(hi)s AND x.seq NOT IN"
        " (SELECT r.seq FROM deliveries r WHERE r.broadcast_id = %(b)s"
        " AND r.seq BETWEEN %(lo)s AND %(hi)s)"
    )


def talked(dialect: str) -> str:
    """SQL aggregate over the snapshot's numbered recipients (`r`): the seqs (`r.n`) of those
    whose contact had a conversation, as a stored JSON array (`[]` when none)."""
    if dialect == "postgresql":
        return "COALESCE(CAST(json_agg(r.n) FILTER (WHERE r.talked) AS TEXT), '[]')"
    return "json_group_array(r.n) FILTER (WHERE r.talked)"


def decode_seqs(stored: str | None) -> list[int] | None:
    """A stored array of seqs (`batches.talked`); None if not noted (a batch written by an
    earlier release)."""
    return None if stored is None else [int(s) for s in json.loads(stored)]


def decode(stored: str) -> list[str]:
    """One of a batch's stored arrays, in seq order."""
    found: list[str] = json.loads(stored)
    return found
