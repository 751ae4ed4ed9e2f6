"""Helpers for the end-to-end sending tests: LINE `serve` processes against the emulator, the
stubs, what the emulator received, and a direct look at the dispatcher's tables."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa
from broadcaster_line_emulator import Account, Exchange
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from broadcaster.v1 import event_service_pb2_grpc as epb_grpc
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.server import ADMIN, auth

A = auth(ADMIN)
T = TypeVar("T")
SENDING = 2  # BroadcastState.SENDING in the broadcasts table


def merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60, every: float = 0.02
) -> T:
    """Poll `check` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Api:
    """The stubs, bound to one server."""

    def __init__(self, server: live.Server) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(
            server.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self.channels = pb_grpc.ChannelServiceStub(self.channel)
        self.contacts = cpb_grpc.ContactServiceStub(self.channel)
        self.broadcasts = bpb_grpc.BroadcastServiceStub(self.channel)
        self.events = epb_grpc.EventServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def connect(
        self, parent: str, account: Account, timeout: float = 120, *, synced: bool = True
    ) -> pb.Channel:
        """CreateChannel, then wait for the follower sync it starts to have read the follower
        list (or to be skipped): contacts imported or changed by webhooks afterwards are not
        overtaken by it. `synced=False`: a server without automatic syncs, no wait."""
        credentials = {
            "channel_access_token": account.access_token,
            "channel_secret": account.channel_secret,
        }
        made = self.channels.CreateChannel(
            pb.CreateChannelRequest(
                parent=parent, channel=pb.Channel(type="line", credentials=credentials)
            ),
            metadata=A,
        )
        if synced:
            self.first_sync(made.name, timeout)
        return made

    def first_sync(self, name: str, timeout: float = 120, *, whole: bool = False) -> pb.ContactSync:
        """Until the follower sync CreateChannel started has read the follower list (or was
        skipped); with `whole`, until it ended (its profiles fetched too)."""

        def settled() -> pb.ContactSync | None:
            sync = self.channels.GetChannel(pb.GetChannelRequest(name=name), metadata=A).last_sync
            assert sync.state != pb.ContactSync.FAILED, sync
            ended = sync.state in (pb.ContactSync.SUCCEEDED, pb.ContactSync.SKIPPED)
            done = ended or (sync.followers_complete and not whole)
            return sync if done else None

        return wait_for(f"the first sync of {name}", settled, timeout, every=0.05)

    def sync_followers(self, name: str, timeout: float = 120) -> pb.ContactSync:
        """SyncContacts, until the follower list is in (profiles keep coming afterwards)."""
        self.channels.SyncContacts(pb.SyncContactsRequest(name=name), metadata=A)

        def listed() -> pb.ContactSync | None:
            sync = self.channels.GetChannel(pb.GetChannelRequest(name=name), metadata=A).last_sync
            assert sync.state != pb.ContactSync.FAILED, sync
            return sync if sync.followers_complete else None

        return wait_for(f"the follower list of {name}", listed, timeout, every=0.1)

    def import_contacts(
        self, channel: str, external_ids: list[str], chunk: int = 10_000
    ) -> list[cpb.Contact]:
        """BatchCreateContacts: the ids as following contacts (what another service knows)."""
        made: list[cpb.Contact] = []
        for lo in range(0, len(external_ids), chunk):
            items = [
                cpb.Contact(external_id=e, follower_state=cpb.Contact.FOLLOWING)
                for e in external_ids[lo : lo + chunk]
            ]
            reply = self.contacts.BatchCreateContacts(
                cpb.BatchCreateContactsRequest(parent=channel, contacts=items), metadata=A
            )
            made.extend(reply.contacts)
        return made

    def draft(self, parent: str, channel: str, text: str) -> bpb.Broadcast:
        return self.broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=parent,
                broadcast=bpb.Broadcast(
                    display_name=text[:200],
                    channel=channel,
                    audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                    messages=[bpb.BroadcastMessage(text=bpb.TextContent(text=text))],
                ),
            ),
            metadata=A,
        )

    def send(self, name: str) -> bpb.Broadcast:
        return self.broadcasts.SendBroadcast(bpb.SendBroadcastRequest(name=name), metadata=A)

    def schedule(self, name: str, when: Timestamp) -> bpb.Broadcast:
        request = bpb.ScheduleBroadcastRequest(name=name, schedule_time=when)
        return self.broadcasts.ScheduleBroadcast(request, metadata=A)

    def get(self, name: str) -> bpb.Broadcast:
        return self.broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=name), metadata=A)

    def deliveries(self, name: str, outcome: int = 0) -> list[bpb.Delivery]:
        out: list[bpb.Delivery] = []
        token = ""
        while True:
            page = self.broadcasts.ListDeliveries(
                bpb.ListDeliveriesRequest(
                    parent=name,
                    page_size=1000,
                    page_token=token,
                    outcome=outcome,  # type: ignore[arg-type]
                ),
                metadata=A,
            )
            out.extend(page.deliveries)
            token = page.next_page_token
            if not token:
                return out

    def pending(self, name: str) -> bool:
        page = self.broadcasts.ListDeliveries(
            bpb.ListDeliveriesRequest(parent=name, page_size=1, outcome=bpb.Delivery.PENDING),
            metadata=A,
        )
        return bool(page.deliveries)

    def finished(self, name: str, timeout: float = 120) -> bpb.Broadcast:
        """The broadcast once it has left SENDING and no recipient is pending any more (batches
        in flight when a broadcast stops are still recorded afterwards)."""

        def done() -> bpb.Broadcast | None:
            b = self.get(name)
            going = (bpb.Broadcast.SENDING, bpb.Broadcast.SCHEDULED)
            if b.state in going or self.pending(name):
                return None
            return b

        wait_for(f"{name} to finish", done, timeout, every=0.05)
        return self.get(name)


@dataclass
class Servers:
    """`broadcaster serve` processes with the LINE plugin pointed at the emulator."""

    database_url: str
    emulator: EmulatorThread
    logs: Path
    running: list[live.Server] = field(default_factory=list)
    apis: list[Api] = field(default_factory=list)

    def start(self, env: dict[str, str] | None = None) -> Api:
        """Another server; `env`: more settings."""
        log = self.logs / f"serve-{len(self.running)}.log"
        server = live.start(
            self.database_url,
            log,
            extra_env={
                "BROADCASTER_PLUGINS": "line",
                "BROADCASTER_LINE_API_BASE": self.emulator.base_url,
                # ScheduleBroadcast takes times a second ahead, so tests see them fire.
                "BROADCASTER_SCHEDULE_MIN_LEAD": "1",
                **(env or {}),
            },
        )
        self.running.append(server)
        api = Api(server)
        self.apis.append(api)
        return api

    def kill(self, api: Api) -> None:
        api.close()
        api.server.process.kill()
        api.server.process.wait()

    def stop_all(self) -> None:
        """Stop what still runs; each must exit cleanly."""
        codes = {}
        for api in self.apis:
            api.close()
        for server in self.running:
            if server.process.poll() is None:
                codes[server.log.name] = server.stop()
        bad = {name: code for name, code in codes.items() if code != 0}
        assert not bad, f"servers exited with {bad}: {[self.logs / n for n in bad]}"


@dataclass(frozen=True)
class Reach:
    """What the emulator delivered for one account (optionally only sends of one text)."""

    sends: int  # accepted multicast requests
    retry_keys: int  # distinct retry keys among them
    deliveries: int  # recipient-messages delivered
    users_reached: int
    more_than_once: int
    reached_ids: frozenset[str]


def reach(emulator: EmulatorThread, account: Account, text: str | None = None) -> Reach:
    def compute() -> Reach:
        log = account.deliveries

        def wanted(send: Any) -> bool:
            return text is None or any(m.get("text") == text for m in send.messages)

        sends = [s for s in log.sends if wanted(s)]
        counts = log.counts(wanted)
        reached = frozenset(account.followers.user_id_at(p) for p, n in enumerate(counts) if n > 0)
        return Reach(
            sends=len(sends),
            retry_keys=len({s.retry_key for s in sends}),
            deliveries=sum(counts),
            users_reached=len(reached),
            more_than_once=sum(1 for n in counts if n > 1),
            reached_ids=reached,
        )

    return emulator.call(compute)


def summary(emulator: EmulatorThread, account: Account) -> dict[str, Any]:
    """The control API's deliveries summary, over HTTP as an operator would read it."""
    url = f"{emulator.base_url}/_emulator/accounts/{account.channel_id}/deliveries/summary"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Attempt:
    """One multicast request as the emulator saw it."""

    retry_key: str
    status: int | None  # None: the connection was reset without an answer
    request_id: str
    recipients: int


class MulticastRecorder:
    """An emulator observer keeping every multicast request of one channel."""

    def __init__(self, emulator: EmulatorThread, account: Account) -> None:
        self._emulator = emulator
        self._channel_id = account.channel_id
        self._attempts: list[Attempt] = []
        emulator.call(emulator.emulator.add_observer, self)

    def __call__(self, exchange: Exchange) -> None:
        if exchange.endpoint != "multicast" or exchange.channel_id != self._channel_id:
            return
        body = json.loads(exchange.body)
        self._attempts.append(
            Attempt(
                retry_key=exchange.headers.get("X-Line-Retry-Key", "").lower(),
                status=exchange.status,
                request_id=exchange.response_headers.get("x-line-request-id", ""),
                recipients=len(body.get("to", ())),
            )
        )

    def attempts(self) -> list[Attempt]:
        return self._emulator.call(lambda: list(self._attempts))

    def close(self) -> None:
        self._emulator.call(self._emulator.emulator.remove_observer, self)

    def by_key(self) -> dict[str, list[Attempt]]:
        chains: dict[str, list[Attempt]] = {}
        for a in self.attempts():
            chains.setdefault(a.retry_key, []).append(a)
        return chains


@dataclass(frozen=True)
class Progress:
    state: int
    sent: int
    open_batches: int
    attempts: int  # claims of its batches so far


class Tables:
    """The dispatcher's tables read directly: what a killed process left behind."""

    def __init__(self, database_url: str) -> None:
        self.engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)

    def close(self) -> None:
        self.engine.dispose()

    def progress(self, broadcast_id: str) -> Progress:
        with self.engine.connect() as conn:
            state, sent, open_batches = conn.execute(
                sa.text("SELECT state, sent, open_batches FROM broadcasts WHERE id = :b"),
                {"b": broadcast_id},
            ).one()
            attempts = conn.execute(
                sa.text("SELECT COALESCE(SUM(attempts), 0) FROM batches WHERE broadcast_id = :b"),
                {"b": broadcast_id},
            ).scalar_one()
        return Progress(int(state), int(sent), int(open_batches), int(attempts))

    def lease_owners(self, channel_ids: list[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT channel_id, owner FROM channel_leases"),
            ).all()
        return {str(c): str(o) for c, o in rows if c in channel_ids}


def resource_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def quota_failure(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str], list[Any]]:
    """Code, ErrorInfo reason and metadata, and the QuotaFailure violations of a failed call."""
    assert isinstance(error, grpc.Call)
    status: status_pb2.Status | None = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error!r}"
    reason, metadata, violations = "", {}, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            violations.extend(quota.violations)
    return error.code(), reason, metadata, violations
