"""Request ids (as Google AIP-155 describes them): a Create, Copy or Send with a request id the
caller already used for the same request returns what the first call made and does nothing
again; the id used again for a different request is INVALID_ARGUMENT `REQUEST_ID_REUSED`.

An id is kept per merchant and method, with a fingerprint of the request (its target and
everything it asked for). The result's name is recorded in the same transaction that creates
it; of two concurrent calls with one request id, the second fails on the record's primary key
and, retried, finds the first's result.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from broadcaster.domain.errors import DomainError, FieldViolation, InvalidArgument
from broadcaster.domain.reasons import Reason
from broadcaster.store import idempotency
from broadcaster.store.database import Database

T = TypeVar("T")


def _plain(value: object) -> object:
    """`value` as JSON-ready data, the same in every process and release."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"_": type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    return value


def request_fingerprint(method: str, *request: object) -> str:
    """A fingerprint of a request: its method and what it asked for."""
    text = json.dumps([method, _plain(request)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def reused(method: str) -> InvalidArgument:
    return InvalidArgument(
        [
            FieldViolation(
                "request_id",
                f"was used for a different {method} request; use a new request id for a new "
                "request, and the same one only to retry the same request",
                Reason.REQUEST_ID_REUSED,
            )
        ],
        reason=Reason.REQUEST_ID_REUSED,
    )


def earlier_result(
    earlier: idempotency.Earlier, method: str, request_hash: str, target: str | None = None
) -> str:
    """The first call's result name if it was this same request; else REQUEST_ID_REUSED. A row
    without a fingerprint (kept before fingerprints) matches unless its result is not `target`,
    the resource this request acts on (for a method that acts on one)."""
    if earlier.request_hash is None:
        if target is not None and earlier.resource_name != target:
            raise reused(method)
        return earlier.resource_name
    if earlier.request_hash != request_hash:
        raise reused(method)
    return earlier.resource_name


async def recall(
    db: Database,
    merchant: str,
    method: str,
    request_id: str,
    request_hash: str,
    target: str | None = None,
) -> str | None:
    """The name the first call with this request id produced, if any (and if it was the same
    request: else REQUEST_ID_REUSED; `target` as for `earlier_result`)."""
    if not request_id:
        return None
    earlier = await db.read(idempotency.recall, merchant, method, request_id)
    return None if earlier is None else earlier_result(earlier, method, request_hash, target)


async def create_once(
    db: Database,
    merchant: str,
    method: str,
    request_id: str,
    *,
    request_hash: str,
    create: Callable[[Connection], tuple[T, str]],
    find: Callable[[Connection, str], T | None],
    gone: Callable[[str], DomainError],
    now: Callable[[], datetime],
) -> T:
    """`create(conn)` makes the resource and returns it with its name; `find(conn, name)` loads
    an earlier result; `gone(name)` is raised when that result has been deleted since.
    `request_hash` is the request's `request_fingerprint`."""

    def tx(conn: Connection) -> T:
        if request_id:
            earlier = idempotency.recall(conn, merchant, method, request_id)
            if earlier is not None:
                name = earlier_result(earlier, method, request_hash)
                found = find(conn, name)
                if found is None:
                    raise gone(name)
                return found
        made, name = create(conn)
        if request_id:
            idempotency.remember(conn, merchant, method, request_id, name, request_hash, now())
        return made

    try:
        return await db.write(tx)
    except IntegrityError:
        # A concurrent call with the same request id (or the same unique resource) won.
        return await db.write(tx)
