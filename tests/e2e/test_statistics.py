"""Broadcast statistics over gRPC with a real server and the test-only channels: figures read
back after a send (withheld ones unset and named), a channel without statistics, the
statistics allowance used up, the summary on Get and List, and another merchant's broadcast."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from broadcaster.store import migrate
from broadcaster.store.database import Database
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from tests.databases import fresh_database
from tests.e2e import server as live
from tests.e2e.server import ADMIN, ALPHA, auth, connect_fake, failure
from tests.e2e.test_operations import cli

A = auth(ADMIN)


@pytest.fixture(scope="module")
def stats_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[live.Server]:
    """A server of its own database (others' servers would read its broadcasts' figures from
    their own fake ledgers), reading figures a second after a send."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path_factory.mktemp(f"stats-{backend}")) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        db.close()
        log = tmp_path_factory.mktemp("stats") / "serve.log"
        env = {"BROADCASTER_STATISTICS_EARLY_INTERVAL": "0.5"}
        running = live.start(url, log, extra_env=env)
        yield running
        assert running.stop() == 0, Path(log).read_text()


@pytest.fixture(scope="module")
def grpc_channel(stats_server: live.Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stats_server.target) as ch:
        yield ch


def _sent(ch: grpc.Channel, kind: str, people: int, **credentials: str) -> tuple[str, str]:
    """A merchant with a channel of `kind` and `people` contacts, and a broadcast sent to them
    all: (parent, broadcast name) once it is sent."""
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    if kind == "fake":
        made = connect_fake(ch, parent, tier="verified", **credentials)
    else:
        made = _connect(ch, parent, kind, **credentials)
    cpb_grpc.ContactServiceStub(ch).BatchCreateContacts(
        cpb.BatchCreateContactsRequest(
            parent=made.name,
            contacts=[cpb.Contact(external_id=f"u-{n}") for n in range(people)],
        ),
        metadata=A,
    )
    stub = pb_grpc.BroadcastServiceStub(ch)
    draft = stub.CreateBroadcast(
        pb.CreateBroadcastRequest(
            parent=parent,
            broadcast=pb.Broadcast(
                display_name="Sale",
                channel=made.name,
                audience=pb.Audience(last_interaction=pb.Audience.ALL_CONTACTS),
                messages=[
                    pb.BroadcastMessage(text=pb.TextContent(text="Sale https://shop.example/s"))
                ],
            ),
        ),
        metadata=A,
    )
    stub.SendBroadcast(pb.SendBroadcastRequest(name=draft.name), metadata=A)
    _until(lambda: stub.GetBroadcast(pb.GetBroadcastRequest(name=draft.name), metadata=A).state
           == pb.Broadcast.SENT)  # fmt: skip
    return parent, draft.name


def _connect(ch: grpc.Channel, parent: str, kind: str, **credentials: str) -> Any:
    from broadcaster.v1 import channel_service_pb2 as chpb
    from broadcaster.v1 import channel_service_pb2_grpc as chpb_grpc

    creds = {
        "token": f"fake-{uuid.uuid4().hex}",
        "account": uuid.uuid4().hex[:10],
        "tier": "verified",
        **credentials,
    }
    return chpb_grpc.ChannelServiceStub(ch).CreateChannel(
        chpb.CreateChannelRequest(
            parent=parent, channel=chpb.Channel(type=kind, credentials=creds)
        ),
        metadata=A,
    )


def _until(ok: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _statistics(ch: grpc.Channel, broadcast: str) -> pb.BroadcastStatistics:
    return pb_grpc.BroadcastServiceStub(ch).GetBroadcastStatistics(
        pb.GetBroadcastStatisticsRequest(name=f"{broadcast}/statistics"), metadata=A
    )


def test_figures_are_read_back_after_a_send(grpc_channel: grpc.Channel) -> None:
    parent, broadcast = _sent(grpc_channel, "fake-stats", 40, withhold_below="10")
    _until(lambda: _statistics(grpc_channel, broadcast).HasField("fetch_time"))
    got = _statistics(grpc_channel, broadcast)
    assert got.name == f"{broadcast}/statistics" and got.unavailable_reason == ""
    assert got.delivered == 40
    # 40 counted: 20 opened; 8 clicked and media plays are withheld: unset, not 0, and named.
    assert got.unique_impressions == 20 and got.open_rate == 0.5
    assert not got.HasField("unique_clicks") and not got.HasField("click_rate")
    assert not got.HasField("unique_media_plays")
    assert [(b.seq, b.impressions) for b in got.bubbles] == [(1, 24)]
    assert [(u.url, u.clicks, u.HasField("unique_clicks")) for u in got.urls] == [
        ("https://shop.example/s", 10, False)
    ]
    withheld = {f.field: f.reason for f in got.unavailable_figures}
    assert withheld["unique_clicks"] == "STATISTICS_WITHHELD"
    assert withheld["urls[0].unique_clicks"] == "STATISTICS_WITHHELD"
    assert "unique_impressions" not in withheld
    # The summary on Get and on List.
    stub = pb_grpc.BroadcastServiceStub(grpc_channel)
    one = stub.GetBroadcast(pb.GetBroadcastRequest(name=broadcast), metadata=A)
    assert one.statistics_summary.open_rate == 0.5
    assert not one.statistics_summary.HasField("click_rate")
    assert one.statistics_summary.HasField("fetch_time")
    (listed,) = stub.ListBroadcasts(pb.ListBroadcastsRequest(parent=parent), metadata=A).broadcasts
    assert listed.statistics_summary == one.statistics_summary


def test_a_channel_without_statistics(grpc_channel: grpc.Channel) -> None:
    _, broadcast = _sent(grpc_channel, "fake", 5)
    got = _statistics(grpc_channel, broadcast)
    assert got.unavailable_reason == "STATISTICS_NOT_SUPPORTED" and got.delivered == 5
    assert not got.HasField("unique_impressions") and not got.HasField("fetch_time")


def test_the_allowance_used_up(grpc_channel: grpc.Channel) -> None:
    _, broadcast = _sent(grpc_channel, "fake-stats", 5, statistics_units="0")
    got = _statistics(grpc_channel, broadcast)
    assert got.unavailable_reason == "STATISTICS_ALLOWANCE_USED_UP"
    stub = pb_grpc.BroadcastServiceStub(grpc_channel)
    one = stub.GetBroadcast(pb.GetBroadcastRequest(name=broadcast), metadata=A)
    assert one.statistics_summary.unavailable_reason == "STATISTICS_ALLOWANCE_USED_UP"


def test_another_merchants_broadcast_is_not_found(grpc_channel: grpc.Channel) -> None:
    _, broadcast = _sent(grpc_channel, "fake-stats", 3)
    stub = pb_grpc.BroadcastServiceStub(grpc_channel)
    # Merchant m-alpha naming the broadcast's id under its own name: as GetBroadcast, NOT_FOUND.
    mine = "merchants/m-alpha/broadcasts/" + broadcast.rsplit("/", 1)[1]
    for call, name in (
        (stub.GetBroadcast, pb.GetBroadcastRequest(name=mine)),
        (stub.GetBroadcastStatistics, pb.GetBroadcastStatisticsRequest(name=f"{mine}/statistics")),
    ):
        with pytest.raises(grpc.RpcError) as e:
            call(name, metadata=auth(ALPHA))  # type: ignore[operator]
        assert failure(e.value).code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        stub.GetBroadcastStatistics(pb.GetBroadcastStatisticsRequest(name=broadcast), metadata=A)
    assert failure(e.value).code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_operator_command_shows_them(
    stats_server: live.Server, grpc_channel: grpc.Channel
) -> None:
    _, broadcast = _sent(grpc_channel, "fake-stats", 40, withhold_below="10")
    _until(lambda: _statistics(grpc_channel, broadcast).HasField("fetch_time"))
    shown = cli(stats_server, "broadcasts", "stats", broadcast)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{broadcast}: 40 delivered"
    opened = next(line for line in lines if line.startswith("opened"))
    clicked = next(line for line in lines if line.startswith("clicked"))
    assert opened.split()[1:] == ["20", "50.0%"]
    assert clicked.split()[1:] == ["withheld", "-"]  # never 0
    assert any("https://shop.example/s" in line and "withheld" in line for line in lines)
    _, plain = _sent(grpc_channel, "fake", 2)
    shown = cli(stats_server, "broadcasts", "stats", plain)
    assert "no figures: STATISTICS_NOT_SUPPORTED" in shown.stdout
