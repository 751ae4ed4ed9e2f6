"""Statistics per unit against the emulator: unit names, the unit on multicasts, the monthly
allowance (sends go on without the unit and say so), LINE's refusal of a unit, and figures read
back with withheld ones as None and late ones growing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from broadcaster_line import statistics
from broadcaster_line.channel import LineChannel
from broadcaster_line_emulator import Account, Engagement, LineEmulator, ManualClock
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.channels import (
    ChannelStatistics,
    ChannelUnavailable,
    CredentialsInvalid,
    Reason,
    SendBatch,
    SendStatus,
    TextMessage,
)

MakeChannel = Callable[..., LineChannel]
HOUR = 3600.0


def batch(recipients: list[str], unit: str) -> SendBatch:
    messages = (TextMessage("Winter sale"),)
    return SendBatch(recipients, messages, str(uuid.uuid4()), statistics_unit=unit)


@given(st.text(max_size=80))
def test_unit_names_follow_line_rules_and_are_deterministic(broadcast_id: str) -> None:
    name = statistics.unit_name(broadcast_id)
    assert statistics.UNIT_NAME.fullmatch(name)
    assert name == statistics.unit_name(broadcast_id)


@given(st.lists(st.uuids().map(str), min_size=2, max_size=50, unique=True))
def test_distinct_ids_get_distinct_units(ids: list[str]) -> None:
    assert len({statistics.unit_name(i) for i in ids}) == len(ids)


def test_ids_that_differ_only_in_dropped_characters_stay_apart() -> None:
    assert statistics.unit_name("a-b") != statistics.unit_name("ab")
    assert statistics.unit_name("short_id") == "b_short_id"


def test_period_is_the_send_day_to_today_in_jst_at_most_30_days() -> None:
    sent = datetime(2025, 3, 1, 16, 0, tzinfo=UTC)  # 2 March, 01:00 JST
    assert statistics.period(sent, datetime(2025, 3, 5, tzinfo=UTC)) == ("20250302", "20250305")
    assert statistics.period(sent, datetime(2025, 6, 1, tzinfo=UTC)) == ("20250302", "20250401")


async def test_the_unit_rides_on_the_multicast(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel
) -> None:
    channel = line_channel(shop)
    unit = channel.statistics_unit("bc_1")
    outcome = await channel.send(batch(emulator.follower_ids(shop)[:10], unit))

    assert outcome.status is SendStatus.ACCEPTED
    assert outcome.statistics_unavailable == ""
    assert [s.unit for s in shop.deliveries.sends] == [unit]


async def test_used_up_allowance_sends_without_the_unit_and_says_so(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel
) -> None:
    emulator.set_engagement(shop, unit_allowance=1)
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    first = await channel.send(batch(users[:5], "b_first"))
    again = await channel.send(batch(users[5:10], "b_first"))
    # A fresh instance reads the month's count and list from LINE.
    fresh = line_channel(shop)
    new = await fresh.send(batch(users[10:15], "b_second"))
    known = await fresh.send(batch(users[15:20], "b_first"))

    assert [o.status for o in (first, again, new, known)] == [SendStatus.ACCEPTED] * 4
    assert new.statistics_unavailable == Reason.STATISTICS_ALLOWANCE_USED_UP
    assert first.statistics_unavailable == known.statistics_unavailable == ""
    assert [s.unit for s in shop.deliveries.sends] == ["b_first", "b_first", None, "b_first"]
    assert all(emulator.times_received(shop, u) == 1 for u in users[:20])


async def test_a_channels_first_batches_at_once_read_the_months_units_once(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel
) -> None:
    """A channel starts a broadcast with many batches in flight at once: the month's count of
    units is read from LINE once for all of them, not once for each batch that asks before
    the first answer is back."""
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    unit = channel.statistics_unit("bc_many")
    outcomes = await asyncio.gather(
        *(channel.send(batch(users[i * 5 : i * 5 + 5], unit)) for i in range(12))
    )

    assert [o.status for o in outcomes] == [SendStatus.ACCEPTED] * 12
    assert [s.unit for s in shop.deliveries.sends] == [unit] * 12
    assert emulator.stats.requests[("aggregation_info", 200)] == 1


async def test_a_refused_unit_is_dropped_and_the_batch_sent_at_once(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel
) -> None:
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    assert (await channel.send(batch(users[:1], "b_warm"))).status is SendStatus.ACCEPTED
    emulator.set_engagement(shop, unit_allowance=1)  # spent after the channel read the count
    outcome = await channel.send(batch(users[1:6], "b_other"))
    later = await channel.send(batch(users[6:8], "b_third"))

    assert outcome.status is SendStatus.ACCEPTED
    assert outcome.statistics_unavailable == Reason.STATISTICS_ALLOWANCE_USED_UP
    assert later.statistics_unavailable == Reason.STATISTICS_ALLOWANCE_USED_UP
    assert [s.unit for s in shop.deliveries.sends] == ["b_warm", None, None]
    assert all(emulator.times_received(shop, u) == 1 for u in users[:8])


async def test_figures_are_read_back_withheld_as_none_and_growing(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel, clock: ManualClock
) -> None:
    emulator.set_engagement(shop, Engagement(open_rate=0.5, click_rate=0.05))
    channel = line_channel(shop)
    unit = channel.statistics_unit("winter")
    sent = datetime.fromtimestamp(clock.time(), UTC)
    users = emulator.follower_ids(shop)
    for part in (users[:500], users[500:1000]):
        assert (await channel.send(batch(part, unit))).status is SendStatus.ACCEPTED
    nothing = await channel.fetch_statistics(unit, sent)
    clock.advance(2 * HOUR)
    early = await channel.fetch_statistics(unit, sent)
    clock.advance(46 * HOUR)
    later = await channel.fetch_statistics(unit, sent)

    assert nothing == ChannelStatistics(None, None)  # withheld alike: nothing counted yet
    assert early is not None and later is not None
    assert early.unique_impressions is not None and later.unique_impressions is not None
    assert 0 < early.unique_impressions < later.unique_impressions
    assert later.unique_clicks is None  # a text bubble has no URL action: LINE reports null
    assert later.unique_media_plays is None
    assert [b.seq for b in later.bubbles] == [1]
    assert later.bubbles[0].impressions is not None
    assert later.bubbles[0].media_plays is None
    assert later.urls == ()


async def test_errors_map_through_the_one_table(
    emulator: LineEmulator, shop: Account, line_channel: MakeChannel
) -> None:
    channel = line_channel(shop)
    sent = datetime.fromtimestamp(emulator.clock.time(), UTC)
    for _ in range(60):
        await channel.fetch_statistics("b_x", sent)
    with pytest.raises(ChannelUnavailable):
        await channel.fetch_statistics("b_x", sent)  # the 61st in the hour: 429
    emulator.revoke_token(shop)
    with pytest.raises(CredentialsInvalid):
        await channel.fetch_statistics("b_x", sent)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 1), timezones=st.just(UTC)
    )
)
def test_a_jst_month_ends_when_the_next_begins(when: datetime) -> None:
    end = statistics.month_end(when)
    assert end > when
    assert statistics.jst_month(end) != statistics.jst_month(when)
    assert statistics.jst_month(end - timedelta(microseconds=1)) == statistics.jst_month(when)
