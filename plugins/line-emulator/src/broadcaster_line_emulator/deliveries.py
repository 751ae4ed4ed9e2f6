"""What every user received. Each accepted send is stored once (its messages, request id, retry
key) with its recipients as a compact array of follower positions; a per-position counter makes
"did everyone get it exactly once?" a single pass over an array, even for a million users. The
counter is brought up to date when it is read, so accepting a send only appends it."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ITEMSIZE = array("I").itemsize


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One accepted push, multicast or broadcast request."""

    index: int
    endpoint: str
    request_id: str
    retry_key: str | None
    messages: tuple[Mapping[str, Any], ...]
    accepted_at: float
    notification_disabled: bool
    recipients: array[int]
    unit: str | None = None  # the customAggregationUnits name it was counted under


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request's messages as one user received them."""

    user_id: str
    channel_id: str
    endpoint: str
    request_id: str
    retry_key: str | None
    messages: tuple[Mapping[str, Any], ...]
    accepted_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "channelId": self.channel_id,
            "endpoint": self.endpoint,
            "requestId": self.request_id,
            "retryKey": self.retry_key,
            "messages": list(self.messages),
            "acceptedAt": self.accepted_at,
        }


class DeliveryLog:
    """Accepted sends of one account, in order, and how often each follower was reached."""

    def __init__(self) -> None:
        self._sends: list[SendRecord] = []
        self._counts: array[int] = array("I")
        self._uncounted: list[array[int]] = []  # recipients of sends not yet in `_counts`
        self._total = 0

    def record(
        self,
        *,
        endpoint: str,
        request_id: str,
        retry_key: str | None,
        messages: Iterable[Mapping[str, Any]],
        accepted_at: float,
        notification_disabled: bool,
        recipients: array[int],
        unit: str | None = None,
    ) -> SendRecord:
        send = SendRecord(
            index=len(self._sends),
            endpoint=endpoint,
            request_id=request_id,
            retry_key=retry_key,
            messages=tuple(messages),
            accepted_at=accepted_at,
            notification_disabled=notification_disabled,
            recipients=recipients,
            unit=unit,
        )
        self._sends.append(send)
        if recipients:
            self._uncounted.append(recipients)
            self._total += len(recipients)
        return send

    def _counted(self) -> array[int]:
        """Receive counts per position, every send recorded so far included."""
        counts = self._counts
        for recipients in self._uncounted:
            needed = max(recipients) + 1 - len(counts)
            if needed > 0:
                counts.frombytes(bytes(needed * _ITEMSIZE))
            for position in recipients:
                counts[position] += 1
        self._uncounted.clear()
        return counts

    @property
    def sends(self) -> Sequence[SendRecord]:
        return self._sends

    @property
    def total_deliveries(self) -> int:
        """Recipient-messages delivered: the sum over sends of their recipient counts."""
        return self._total

    def times_received(self, position: int) -> int:
        counts = self._counted()
        return counts[position] if position < len(counts) else 0

    def sends_to(self, position: int) -> list[SendRecord]:
        """The sends that reached one follower, in the order they were accepted."""
        if self.times_received(position) == 0:
            return []
        return [send for send in self._sends if position in send.recipients]

    def users_reached(self) -> int:
        counts = self._counted()
        return len(counts) - counts.count(0)

    def counts(self, where: Callable[[SendRecord], bool] | None = None) -> array[int]:
        """Per-position receive counts, over all sends or only those `where` selects."""
        if where is None:
            return array("I", self._counted())
        counts: array[int] = array("I", bytes(len(self._counted()) * _ITEMSIZE))
        for send in self._sends:
            if where(send):
                for position in send.recipients:
                    counts[position] += 1
        return counts

    def positions_received(
        self, times: int, where: Callable[[SendRecord], bool] | None = None
    ) -> list[int]:
        """Positions that received exactly `times` of the selected sends (times >= 1)."""
        if times < 1:
            raise ValueError("times must be at least 1; unreached followers have no count")
        counts = self.counts(where)
        return [position for position, count in enumerate(counts) if count == times]

    def positions_received_more_than_once(
        self, where: Callable[[SendRecord], bool] | None = None
    ) -> list[int]:
        counts = self.counts(where)
        return [position for position, count in enumerate(counts) if count > 1]
