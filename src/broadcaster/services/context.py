"""What every application service needs: the database, a clock, the metrics to count in, and
the key that signs page tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from broadcaster.domain.paging import PageTokens
from broadcaster.domain.statistics import Schedule
from broadcaster.metrics import Metrics
from broadcaster.store.database import Database


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ServiceContext:
    db: Database
    clock: Callable[[], datetime] = field(default=_utcnow)
    # The app's metrics (a private set by default, so tests need not care).
    metrics: Metrics = field(default_factory=lambda: Metrics(process=False))
    # Signs page tokens; the app's is derived from BROADCASTER_SECRET_KEY (the same on every
    # replica), the default is this process's own.
    pages: PageTokens = field(default_factory=PageTokens.random)
    # Message Center events were recorded (for a merchant; None: any): wakes this process's
    # watchers at once (the event feed sets it; other replicas hear through PostgreSQL).
    events_recorded: Callable[[str | None], None] = field(default=lambda _merchant: None)
    # How often a channel's follower list is re-synced (BROADCASTER_FOLLOWER_SYNC_INTERVAL); a
    # list not read whole within twice this is stale. None: followers are synced only when asked
    # (SyncContacts), and a list read whole once is never stale.
    follower_sync_interval: timedelta | None = timedelta(days=1)
    # When broadcasts' statistics are read (BROADCASTER_STATISTICS_*).
    statistics: Schedule = field(default_factory=Schedule)

    @property
    def followers_stale_after(self) -> timedelta | None:
        interval = self.follower_sync_interval
        return None if interval is None else 2 * interval

    def now(self) -> datetime:
        return self.clock()
