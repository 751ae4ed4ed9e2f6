"""Audience criteria: a last-interaction window AND an optional customer group (the rules in
docs/architecture.md, "Audience rules")."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta


class InteractionWindow(enum.Enum):
    """Who counts by last interaction; ALL_CONTACTS includes those who never interacted."""

    LAST_24_HOURS = timedelta(hours=24)
    LAST_72_HOURS = timedelta(hours=72)
    LAST_7_DAYS = timedelta(days=7)
    LAST_30_DAYS = timedelta(days=30)
    LAST_365_DAYS = timedelta(days=365)
    ALL_CONTACTS = None


@dataclass(frozen=True, slots=True)
class Audience:
    window: InteractionWindow
    # Resource id of one customer group; None means all customers (no group filter).
    customer_group: str | None = None
