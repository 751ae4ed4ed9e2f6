"""A broadcast's statistics through the LINE plugin and the LINE emulator, against real `serve`
processes: every multicast of a broadcast carries its aggregation unit, the service reads the
figures back from LINE's insight endpoint and GetBroadcastStatistics answers them; figures LINE
withholds (too few people) are unset, never 0; and once the month's unit allowance is used up
the broadcast still goes to everyone, without a unit, and says its statistics are unavailable.

The emulator's friends open about 40 % of what they are sent within a tenth of a second, so a
read a second after the send (BROADCASTER_STATISTICS_EARLY_INTERVAL) has the figures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broadcaster_line_emulator import Account, Engagement

from broadcaster.v1 import broadcast_service_pb2 as bpb
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import A, Api, Servers, merchant, reach, wait_for

QUICK_READS = {"BROADCASTER_STATISTICS_EARLY_INTERVAL": "1"}
FAST = Engagement(arrival_hours=0.1 / 3600)


@pytest.fixture
def servers(own_database: str, emulator: EmulatorThread, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(own_database, emulator, tmp_path)
    yield made
    made.stop_all()


def _sent(
    emulator: EmulatorThread, api: Api, followers: int, units: int | None = None
) -> tuple[Account, str]:
    """A LINE account of `followers` friends who engage at once, connected; a text sent to all
    of them and finished. Its unit allowance: `units` names a month, or LINE's."""
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=followers)
    emulator.call(emu.set_engagement, account, FAST, unit_allowance=units)
    parent = merchant()
    made = api.connect(parent, account)
    draft = api.draft(parent, made.name, "Winter sale: 20% off")
    api.send(draft.name)
    done = api.finished(draft.name)
    assert done.state == bpb.Broadcast.SENT and done.counters.sent == followers
    got = reach(emulator, account)
    assert (got.users_reached, got.more_than_once) == (followers, 0)
    return account, draft.name


def _statistics(api: Api, name: str) -> bpb.BroadcastStatistics:
    return api.broadcasts.GetBroadcastStatistics(
        bpb.GetBroadcastStatisticsRequest(name=f"{name}/statistics"), metadata=A
    )


def _read(api: Api, name: str) -> bpb.BroadcastStatistics:
    def read() -> bpb.BroadcastStatistics | None:
        found = _statistics(api, name)
        return found if found.HasField("fetch_time") else None

    return wait_for("the statistics read from LINE", read, timeout=30, every=0.1)


def _units_used(emulator: EmulatorThread, account: Account) -> list[str]:
    return emulator.call(lambda: account.units.used(time.time()))


def test_opens_reach_get_broadcast_statistics(emulator: EmulatorThread, servers: Servers) -> None:
    api = servers.start(QUICK_READS)
    account, name = _sent(emulator, api, 600)
    # One unit for the broadcast, on each of its two multicasts.
    assert len(_units_used(emulator, account)) == 1
    got = _read(api, name)
    assert got.unavailable_reason == "" and got.delivered == 600
    assert got.HasField("unique_impressions") and 0.3 <= got.open_rate <= 0.5
    assert got.unique_impressions == round(got.open_rate * 600)
    assert [b.seq for b in got.bubbles] == [1] and got.bubbles[0].impressions > 0
    summary = api.get(name).statistics_summary
    assert summary.open_rate == got.open_rate and summary.HasField("fetch_time")


def test_figures_of_too_few_people_are_withheld_not_zero(
    emulator: EmulatorThread, servers: Servers
) -> None:
    api = servers.start(QUICK_READS)
    _, name = _sent(emulator, api, 30)  # about 12 open: LINE withholds counts under 20
    got = _read(api, name)
    assert got.delivered == 30 and got.unavailable_reason == ""
    assert not got.HasField("unique_impressions") and not got.HasField("open_rate")
    withheld = {f.field: f.reason for f in got.unavailable_figures}
    assert withheld["unique_impressions"] == "STATISTICS_WITHHELD"
    assert not api.get(name).statistics_summary.HasField("open_rate")


def test_the_unit_allowance_used_up_sends_to_everyone_without_statistics(
    emulator: EmulatorThread, servers: Servers
) -> None:
    api = servers.start(QUICK_READS)
    account, name = _sent(emulator, api, 1_200, units=0)  # three batches, all delivered
    assert _units_used(emulator, account) == []
    got = _statistics(api, name)
    assert got.unavailable_reason == "STATISTICS_ALLOWANCE_USED_UP" and got.delivered == 1_200
    assert not got.HasField("fetch_time") and not got.HasField("unique_impressions")
    assert api.get(name).statistics_summary.unavailable_reason == "STATISTICS_ALLOWANCE_USED_UP"
