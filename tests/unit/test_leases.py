"""The leases of every channel a process dispatches are renewed together: one write per period
for all of them; a channel whose lease was not renewed is told whether it was deleted or taken
over, and is renewed no more."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from broadcaster.dispatch.leases import LeaseKeeper
from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.store import dispatch as store

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@dataclass
class Terms:
    lease_seconds: float = 0.05
    lease_margin: float = 0.03


@dataclass
class FakeDb:
    """Renews the leases in `kept`; says the channels in `deleted` are gone."""

    kept: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    fail: bool = False
    writes: list[list[tuple[str, str]]] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)

    async def write(self, fn: Callable[..., Any], held: list[tuple[str, str]], until: Any) -> Any:
        assert fn is store.renew_channels and until > NOW
        if self.fail:
            raise ConnectionError("database unreachable")
        self.writes.append(held)
        return {c for c, _ in held if c in self.kept}

    async def read(self, fn: Callable[..., Any], channel: str) -> bool:
        assert fn is store.channel_live
        self.reads.append(channel)
        return channel not in self.deleted


@dataclass
class Run:
    channel: str
    owner: str
    valid: float = 0.0
    lost: bool = False
    reason: Reason | None = None

    def renewed(self, valid_until: float) -> None:
        self.valid = valid_until

    def lose(self) -> None:
        self.lost = True

    def gone(self, reason: Reason) -> None:
        self.reason = reason


def _keeper(db: FakeDb) -> LeaseKeeper:
    ctx = cast(ServiceContext, type("Ctx", (), {"db": db, "now": staticmethod(lambda: NOW)})())
    return LeaseKeeper(ctx, Terms)


async def test_every_lease_held_is_renewed_in_one_write() -> None:
    db = FakeDb(kept={f"ch-{n}" for n in range(32)})
    keeper = _keeper(db)
    runs = [Run(f"ch-{n}", f"me:{n}") for n in range(32)]
    for run in runs:
        keeper.hold(run)
    await keeper.renew()
    assert db.writes == [[(r.channel, r.owner) for r in runs]]
    assert all(r.valid > 0 and not r.lost and r.reason is None for r in runs)
    assert db.reads == []


async def test_a_lease_not_renewed_is_lost_or_its_channel_gone() -> None:
    db = FakeDb(kept={"kept"}, deleted={"deleted"})
    keeper = _keeper(db)
    kept, taken, deleted = Run("kept", "me:1"), Run("taken", "me:2"), Run("deleted", "me:3")
    for run in (kept, taken, deleted):
        keeper.hold(run)
    await keeper.renew()
    assert (kept.lost, kept.reason) == (False, None)
    assert (taken.lost, taken.reason) == (True, None)
    assert (deleted.lost, deleted.reason) == (False, Reason.CHANNEL_NOT_CONNECTED)
    assert sorted(db.reads) == ["deleted", "taken"]
    await keeper.renew()  # only the one still held
    assert db.writes[-1] == [("kept", "me:1")]


async def test_a_released_run_is_renewed_no_more_and_nothing_is_written_for_none() -> None:
    db = FakeDb(kept={"a", "b"})
    keeper = _keeper(db)
    a, b = Run("a", "me:1"), Run("b", "me:2")
    keeper.hold(a)
    keeper.hold(b)
    keeper.release(a)
    keeper.release(Run("b", "me:old"))  # an earlier run of the same channel: not b's lease
    await keeper.renew()
    assert db.writes == [[("b", "me:2")]]
    keeper.release(b)
    await keeper.renew()
    assert len(db.writes) == 1


async def test_a_run_that_lets_its_lease_go_while_the_renewal_looks_is_not_lost() -> None:
    """A run leaves its channel in the transaction of its last claim, and stops being renewed
    once that returns: a renewal written in between misses its lease. If the run lets go
    while the keeper looks whether the channel still exists, it is neither lost nor gone."""
    keeper: LeaseKeeper

    class Leaving(FakeDb):
        async def read(self, fn: Callable[..., Any], channel: str) -> bool:
            keeper.release(run)  # the run's claim returned meanwhile
            return await super().read(fn, channel)

    db = Leaving()
    keeper = _keeper(db)
    run = Run("left", "me:1")
    keeper.hold(run)
    await keeper.renew()
    assert (run.lost, run.reason) == (False, None)
    assert db.reads == ["left"]
    await keeper.renew()
    assert len(db.writes) == 1  # renewed no more


async def test_a_failed_renewal_keeps_every_run_as_it_was_and_is_tried_again() -> None:
    db = FakeDb(kept={"a"}, fail=True)
    keeper = _keeper(db)
    a = Run("a", "me:1")
    keeper.hold(a)
    await keeper.renew()
    assert (a.valid, a.lost, a.reason) == (0.0, False, None)
    db.fail = False
    keeper.start(contextvars.copy_context())
    await asyncio.sleep(Terms.lease_seconds)  # more than a fifth of a term
    await keeper.close()
    assert a.valid > 0 and db.writes


class Broken(Run):
    def renewed(self, valid_until: float) -> None:
        raise RuntimeError("a dispatch that cannot take the news")


async def test_one_channels_error_does_not_keep_the_others_from_being_renewed() -> None:
    db = FakeDb(kept={"a", "b"})
    keeper = _keeper(db)
    keeper.hold(Broken("a", "me:1"))
    b = Run("b", "me:2")
    keeper.hold(b)
    await keeper.renew()
    assert b.valid > 0
