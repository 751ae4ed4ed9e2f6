"""What every application service needs: the database and a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broadcaster.store.clock import to_us
from broadcaster.store.database import Database


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ServiceContext:
    db: Database
    clock: Callable[[], datetime] = field(default=_utcnow)

    def now(self) -> datetime:
        return self.clock()

    def now_us(self) -> int:
        return to_us(self.clock())
