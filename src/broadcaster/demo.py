"""`broadcaster demo`: the whole job in one command, on embedded defaults.

It starts the LINE emulator and the real service in this process (an event loop in a background
thread; gRPC and HTTP on loopback ports the system picks, SQLite in a temporary directory), then
acts as a client over real gRPC and signed webhooks, as the admin UI and LINE would:

1. connects a verified LINE Official Account with N friends and syncs its followers;
2. posts signed webhook events (messages and postbacks spread over the last year, a few
   blocks) to the service's webhook endpoint;
3. links contacts to customers, fills two customer groups, opts some contacts out;
4. estimates a few audiences;
5. sends a broadcast of a text and an image bubble to every contact, with a live progress bar;
6. prints the broadcast list and counts the Message Center events the send recorded.

The service's logs (JSON lines) go to a file, so the terminal shows only the story. Nothing
leaves the machine: the "LINE Platform" is the emulator, and the image URLs are never fetched.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import math
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from broadcaster import console, logs
from broadcaster.progress import Progress, table
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as cpb
from broadcaster.v1 import channel_service_pb2_grpc as cpb_grpc
from broadcaster.v1 import contact_service_pb2 as kpb
from broadcaster.v1 import contact_service_pb2_grpc as kpb_grpc
from broadcaster.v1 import customer_group_service_pb2 as gpb
from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc
from broadcaster.v1 import event_service_pb2 as epb
from broadcaster.v1 import event_service_pb2_grpc as epb_grpc

if TYPE_CHECKING:
    from broadcaster_line.emulator import Account, LineEmulator, WebhookResult

    from broadcaster.api.server import RunningServer
    from broadcaster.app import App
    from broadcaster.http.app import RunningHttp

T = TypeVar("T")

DEFAULT_FOLLOWERS = 50_000
SEED = 20240601  # the same shop, friends and history on every run
DAY_MS = 86_400_000
# Shares of the friends, chosen to give every audience in the estimate something to show.
INTERACTING = 0.4  # wrote or tapped something within the last year (through webhooks)
BLOCKED = 0.01  # blocked the account since (unfollow events): unreachable
CUSTOMERS = 0.4  # linked to a shop customer (another service imports the link)
OPTED_OUT = 0.02  # of the customers: turned notifications off in the shop
VIP = 0.1  # of the customers
REPEAT_BUYERS = 0.4  # of the customers
WEBHOOK_BATCH = 1000  # events per webhook request: a year of history, replayed in bulk
WEBHOOK_CONCURRENCY = 8
REDELIVERIES = 3  # of a webhook request the service answered with a 5xx
IDEMPOTENT_RETRIES = 3  # of a merge or an update a busy database refused (deadlock)
_RETRYABLE = (grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
OPT_OUTS_BY_UPDATE = 20
IMPORT_CHUNK = 10_000  # BatchCreateContacts' maximum
POLL_SECONDS = 0.1
CALL_TIMEOUT = 60.0
IMAGE = "https://cdn.example.com/demo/summer-sale.jpg"
IMAGE_PREVIEW = "https://cdn.example.com/demo/summer-sale-preview.jpg"
TEXT = (
    "Summer sale starts today: 30% off everything in the shop until Sunday. "
    "Show this message at the counter or use code SUMMER30 online."
)


class DemoFailed(Exception):
    """The demo could not go on; the message says what went wrong."""


# -- the service and the emulator, in-process -------------------------------------------------


class Stack:
    """The LINE emulator and the broadcaster service on one event loop in a background thread.

    Everything that touches either goes through `run`/`call`, on that loop."""

    def __init__(self, database_url: str, secret_key: str | None) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="broadcaster-demo"
        )
        self._emulator: LineEmulator | None = None
        self._app: App | None = None
        self._servers: tuple[RunningServer, RunningHttp] | None = None

    @property
    def emulator(self) -> LineEmulator:
        assert self._emulator is not None, "start() first"
        return self._emulator

    @property
    def grpc_port(self) -> int:
        assert self._servers is not None, "start() first"
        return self._servers[0].port

    @property
    def http_port(self) -> int:
        assert self._servers is not None, "start() first"
        return self._servers[1].port

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        async def wrapped() -> T:
            return await coro

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def wrapped() -> T:
            return fn(*args, **kwargs)

        return self.run(wrapped())

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        try:
            from broadcaster_line.emulator import LineEmulator
        except ImportError:
            raise DemoFailed(
                "the demo needs the LINE channel plugin, the broadcaster-line distribution "
                "(plugins/line), installed beside broadcaster"
            ) from None
        from broadcaster.app import App, prepare_schema
        from broadcaster.config import Config

        self._emulator = LineEmulator(seed=SEED)
        base_url = await self._emulator.start("127.0.0.1", 0)
        # Embedded defaults, whatever the environment says: this process alone, on loopback,
        # no tokens, only the LINE plugin, pointed at the emulator.
        config = Config.from_env(
            {
                "BROADCASTER_DATABASE_URL": self.database_url,
                "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
                "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
                "BROADCASTER_PLUGINS": "line",
                "BROADCASTER_SECRET_KEY": self.secret_key or "",
                "BROADCASTER_LINE_API_BASE": base_url,
            }
        )
        self._app = App.build(config)
        await asyncio.to_thread(prepare_schema, self._app.db)
        self._servers = await self._app.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if self._app is not None:
                self._app.close()

    async def _stop(self) -> None:
        if self._app is not None and self._servers is not None:
            await self._app.stop(*self._servers)
        if self._emulator is not None:
            await self._emulator.stop()


# -- the client side -----------------------------------------------------------------------------


@dataclass
class Stubs:
    channels: cpb_grpc.ChannelServiceStub
    contacts: kpb_grpc.ContactServiceStub
    groups: gpb_grpc.CustomerGroupServiceStub
    broadcasts: bpb_grpc.BroadcastServiceStub
    events: epb_grpc.EventServiceStub

    @classmethod
    def bind(cls, channel: grpc.Channel) -> Stubs:
        return cls(
            cpb_grpc.ChannelServiceStub(channel),
            kpb_grpc.ContactServiceStub(channel),
            gpb_grpc.CustomerGroupServiceStub(channel),
            bpb_grpc.BroadcastServiceStub(channel),
            epb_grpc.EventServiceStub(channel),
        )


class Story:
    """Prints the demo's steps with the time since it began."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.began = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def stamp(self, text: str) -> str:
        return f"[{self.elapsed():5.1f}s] {text}"

    def step(self, text: str) -> None:
        print(self.stamp(text), file=self.out, flush=True)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


@dataclass(frozen=True)
class Audience:
    label: str
    window: bpb.Audience.InteractionWindow.ValueType
    group: str = ""  # a customer group's name, or "" for all customers


def _spread_timestamps(rng: random.Random, now_ms: int, count: int) -> list[int]:
    """Interaction times over the last 365 days, denser towards today (as activity is)."""
    return [now_ms - int(365 * DAY_MS * rng.random() ** 2) - 1000 for _ in range(count)]


class Demo:
    def __init__(self, stack: Stack, stubs: Stubs, story: Story, merchant: str) -> None:
        self.stack = stack
        self.api = stubs
        self.story = story
        self.merchant = merchant
        self.rng = random.Random(SEED)

    # -- 1. a channel with friends -----------------------------------------------------------

    def connect(self, followers: int) -> tuple[Account, cpb.Channel]:
        emu = self.stack.emulator
        account = self.stack.call(
            emu.add_account,
            tier="verified",
            display_name="Demo Shop",
            followers=followers,
            quota=max(4 * followers, 1000),
        )
        channel = self.api.channels.CreateChannel(
            cpb.CreateChannelRequest(
                parent=self.merchant,
                channel=cpb.Channel(
                    type="line",
                    credentials={
                        "channel_access_token": account.access_token,
                        "channel_secret": account.channel_secret,
                    },
                ),
                request_id="demo-connect-line",
            ),
            timeout=CALL_TIMEOUT,
        )
        tier = cpb.Channel.Tier.Name(channel.tier).lower()
        self.story.step(
            f"connected the LINE Official Account {channel.display_name!r} ({tier}): {channel.name}"
        )
        return account, channel

    def sync(self, channel: cpb.Channel) -> int:
        self.api.channels.SyncContacts(
            cpb.SyncContactsRequest(name=channel.name), timeout=CALL_TIMEOUT
        )
        progress = Progress(self.story.out)
        while True:
            sync = self.api.channels.GetChannel(
                cpb.GetChannelRequest(name=channel.name), timeout=CALL_TIMEOUT
            ).last_sync
            if sync.state in (cpb.ContactSync.FAILED, cpb.ContactSync.SKIPPED):
                raise DemoFailed(f"contact sync {sync.error_reason} {sync.message}".strip())
            if sync.followers_complete:
                break
            if sync.contacts_synced:
                progress.update(sync.contacts_synced, None, "followers listed")
            time.sleep(POLL_SECONDS)
        progress.finish(
            self.story.stamp(
                f"synced {sync.contacts_synced:,} followers into contacts "
                "(their profiles keep arriving in the background)"
            )
        )
        return int(sync.contacts_synced)

    # -- 2. interactions through signed webhooks ----------------------------------------------

    def interactions(self, account: Account, channel: cpb.Channel, followers: list[str]) -> None:
        rng, emu = self.rng, self.stack.emulator
        now_ms = int(time.time() * 1000)
        active = rng.sample(followers, int(len(followers) * INTERACTING))
        times = _spread_timestamps(rng, now_ms, len(active))
        blocked = set(rng.sample(followers, int(len(followers) * BLOCKED)))

        def build() -> list[dict[str, Any]]:
            factory = emu.events
            events: list[dict[str, Any]] = []
            for user, ts in zip(active, times, strict=True):
                if rng.random() < 0.7:
                    events.append(factory.text_message(user, "Is this in stock?", timestamp_ms=ts))
                else:
                    events.append(factory.postback(user, "action=coupon", timestamp_ms=ts))
            events.sort(key=lambda e: e["timestamp"])  # LINE delivers roughly in order
            for user in sorted(blocked):
                # Stamped now: after the sync that listed them as following.
                events.append(emu.unfollow(account, user))
            return events

        events = self.stack.call(build)
        url = f"http://127.0.0.1:{self.stack.http_port}{channel.webhook_path}"
        started = time.monotonic()
        progress = Progress(self.story.out)
        posted = 0
        gate = asyncio.Semaphore(WEBHOOK_CONCURRENCY)

        async def deliver(batch: list[dict[str, Any]]) -> WebhookResult:
            """One request; redelivered (as LINE does) while the service answers 5xx."""
            async with gate:
                sender = emu.webhook_sender(account)  # on the loop: it uses the loop's session
                for attempt in range(REDELIVERIES + 1):
                    result = await sender.post(url, batch)
                    if result.status < 500 or attempt == REDELIVERIES:
                        break
                    await asyncio.sleep(0.2 * (attempt + 1))
                    batch = [emu.events.redelivered(e) for e in batch]
                return result

        async def post(chunk: list[dict[str, Any]]) -> list[WebhookResult]:
            batches = [chunk[i : i + WEBHOOK_BATCH] for i in range(0, len(chunk), WEBHOOK_BATCH)]
            return list(await asyncio.gather(*(deliver(b) for b in batches)))

        # Posted in slices, a few requests overlapping, so that the progress bar moves.
        slice_size = WEBHOOK_BATCH * WEBHOOK_CONCURRENCY * 2
        for lo in range(0, len(events), slice_size):
            chunk = events[lo : lo + slice_size]
            refused = [r for r in self.stack.run(post(chunk)) if r.status != 200]
            if refused:
                r = refused[0]
                raise DemoFailed(f"the webhook endpoint answered {r.status}: {r.response_body}")
            posted += len(chunk)
            progress.update(posted, len(events), "webhook events")
        seconds = time.monotonic() - started
        progress.finish(
            self.story.stamp(
                f"{len(active):,} friends wrote or tapped something over the last year and "
                f"{len(blocked):,} blocked the account: {len(events):,} signed webhook events "
                f"in {math.ceil(len(events) / WEBHOOK_BATCH):,} requests "
                f"({len(events) / max(seconds, 1e-6):,.0f} events/s)"
            )
        )

    # -- 3. customers, groups, opt-outs --------------------------------------------------------

    def customers(
        self, channel: cpb.Channel, followers: list[str]
    ) -> tuple[gpb.CustomerGroup, gpb.CustomerGroup]:
        rng = self.rng
        linked = rng.sample(followers, int(len(followers) * CUSTOMERS))
        customer_of = {user: f"cust-{n:06d}" for n, user in enumerate(linked, start=1)}
        # Customers who turned notifications off in the shop: most are in the import below,
        # a few change their preference afterwards (one UpdateContact each).
        opting = rng.sample(linked, int(len(linked) * OPTED_OUT))
        updating = set(opting[: min(OPT_OUTS_BY_UPDATE, len(opting))])
        imported_opted_out = set(opting) - updating
        contacts: list[kpb.Contact] = []
        for lo in range(0, len(linked), IMPORT_CHUNK):
            # What the shop knows (customers who logged in with LINE), merged by LINE user id.
            request = kpb.BatchCreateContactsRequest(
                parent=channel.name,
                contacts=[
                    kpb.Contact(
                        external_id=user,
                        follower_state=kpb.Contact.FOLLOWING,
                        customer_id=customer_of[user],
                        opted_out=user in imported_opted_out,
                    )
                    for user in linked[lo : lo + IMPORT_CHUNK]
                ],
            )
            reply = _idempotent(self.api.contacts.BatchCreateContacts, request)
            contacts.extend(c for c in reply.contacts if c.external_id in updating)
        customer_ids = list(customer_of.values())

        def group(name: str, description: str, share: float) -> gpb.CustomerGroup:
            made = self.api.groups.CreateCustomerGroup(
                gpb.CreateCustomerGroupRequest(
                    parent=self.merchant,
                    customer_group=gpb.CustomerGroup(display_name=name, description=description),
                    request_id=f"demo-group-{name.lower().replace(' ', '-')}",
                ),
                timeout=CALL_TIMEOUT,
            )
            members = rng.sample(customer_ids, max(1, int(len(customer_ids) * share)))
            added = _idempotent(
                self.api.groups.AddCustomerGroupMembers,
                gpb.AddCustomerGroupMembersRequest(customer_group=made.name, customer_ids=members),
            )
            made.member_count = added.member_count
            return made

        vip = group("VIP", "Spent over 50,000 this year", VIP)
        repeat = group("Repeat buyers", "Two orders or more", REPEAT_BUYERS)

        # The shop's preference page reports each change as it happens.
        mask = field_mask_pb2.FieldMask(paths=["opted_out"])
        for contact in contacts:
            _idempotent(
                self.api.contacts.UpdateContact,
                kpb.UpdateContactRequest(
                    contact=kpb.Contact(name=contact.name, opted_out=True), update_mask=mask
                ),
            )
        self.story.step(
            f"{len(linked):,} contacts linked to shop customers; customer groups "
            f"{vip.display_name!r} ({vip.member_count:,}) and {repeat.display_name!r} "
            f"({repeat.member_count:,}); {len(opting):,} customers opted out of notifications "
            f"({len(contacts)} of them just now)"
        )
        return vip, repeat

    # -- 4. estimates ------------------------------------------------------------------------

    def estimates(self, channel: cpb.Channel, audiences: Sequence[Audience]) -> None:
        rows = []
        for a in audiences:
            e = self.api.broadcasts.EstimateAudience(
                bpb.EstimateAudienceRequest(
                    parent=self.merchant,
                    channel=channel.name,
                    audience=bpb.Audience(
                        last_interaction=a.window, customer_groups=[a.group] if a.group else []
                    ),
                ),
                timeout=CALL_TIMEOUT,
            )
            if not e.eligible:
                expected = f"not eligible: {e.ineligible_reason}"
            else:
                expected = f"{e.expected_recipients:,}"
            rows.append(
                [a.label, f"{e.matched:,}", f"{e.opted_out:,}", f"{e.unreachable:,}", expected]
            )
        quota = self.api.channels.GetChannelQuota(
            cpb.GetChannelQuotaRequest(name=f"{channel.name}/quota"), timeout=CALL_TIMEOUT
        )
        self.story.step("audience estimates (what the draft form shows):")
        self.story.say("")
        headers = ["AUDIENCE", "MATCH", "OPTED OUT", "UNREACHABLE", "EXPECTED TO RECEIVE"]
        self.story.say(_indent(table(headers, rows, limits=[0, 0, 0, 0, 0])))
        remaining = f"{quota.remaining:,} of {quota.limit:,}" if quota.limited else "unlimited"
        self.story.say(f"  message quota left this month: {remaining}")
        self.story.say("")

    # -- 5. send -----------------------------------------------------------------------------

    def send(self, channel: cpb.Channel) -> bpb.Broadcast:
        draft = self.api.broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=self.merchant,
                broadcast=bpb.Broadcast(
                    display_name="Summer sale: 30% off",
                    channel=channel.name,
                    audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                    messages=[
                        bpb.BroadcastMessage(text=bpb.TextContent(text=TEXT)),
                        bpb.BroadcastMessage(
                            image=bpb.ImageContent(
                                original_content_uri=IMAGE, preview_image_uri=IMAGE_PREVIEW
                            )
                        ),
                    ],
                ),
                request_id="demo-summer-sale",
            ),
            timeout=CALL_TIMEOUT,
        )
        b = self.api.broadcasts.SendBroadcast(
            bpb.SendBroadcastRequest(name=draft.name, request_id="demo-summer-sale-send"),
            timeout=CALL_TIMEOUT,
        )
        self.story.step(
            f"sending {b.display_name!r} (a text and an image bubble) to "
            f"{b.counters.total:,} recipients: {b.name}"
        )
        progress = Progress(self.story.out)
        started = time.monotonic()
        request = bpb.GetBroadcastRequest(name=b.name)
        b = console.follow_broadcast(
            b,
            lambda: self.api.broadcasts.GetBroadcast(request, timeout=CALL_TIMEOUT),
            progress,
            POLL_SECONDS,
        )
        c = b.counters
        seconds = time.monotonic() - started
        summary = (
            f"broadcast {bpb.Broadcast.State.Name(b.state)}: {c.sent:,} / {c.total:,} sent, "
            f"{c.failed:,} failed, in {seconds:.1f}s"
        )
        if b.failure_reason:
            summary += f" ({b.failure_reason})"
        progress.finish(self.story.stamp(summary))
        return b

    # -- 6. the list and the Message Center ------------------------------------------------------

    def copy_as_draft(self, sent: bpb.Broadcast) -> None:
        """A follow-up draft, so the list shows more than one state."""
        self.api.broadcasts.CopyBroadcast(
            bpb.CopyBroadcastRequest(name=sent.name, request_id="demo-summer-sale-copy"),
            timeout=CALL_TIMEOUT,
        )

    def events(self, broadcast: str) -> tuple[int, int]:
        """Message Center events of `broadcast`: messages and conversations it created."""
        messages = conversations = 0
        token = ""
        while True:
            page = self.api.events.ListEvents(
                epb.ListEventsRequest(parent=self.merchant, page_size=1000, page_token=token),
                timeout=CALL_TIMEOUT,
            )
            for e in page.events:
                if e.broadcast != broadcast:
                    continue
                if e.kind == epb.Event.BROADCAST_MESSAGE:
                    messages += 1
                elif e.kind == epb.Event.CONVERSATION_CREATED:
                    conversations += 1
            token = page.next_page_token
            if not token:
                return messages, conversations


def _idempotent(method: Callable[..., T], request: Any) -> T:
    """Call `method`, again after a short pause when the server failed in a way a retry may
    cure (a database deadlock surfaces as INTERNAL); only for calls that are safe to repeat."""
    for attempt in range(IDEMPOTENT_RETRIES + 1):
        try:
            return method(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code not in _RETRYABLE or attempt == IDEMPOTENT_RETRIES:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


# -- the command ---------------------------------------------------------------------------


def add_command(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole job in one command: LINE emulator, service, 50,000 friends, a send",
        description=(
            "Start the LINE emulator and the service in this process (SQLite in a temporary "
            "directory), seed a shop with a verified LINE account and its friends, estimate "
            "audiences, send a broadcast with a live progress bar, and show the results."
        ),
    )
    demo.add_argument(
        "--followers",
        type=int,
        default=DEFAULT_FOLLOWERS,
        help="friends of the demo LINE account (default %(default)s)",
    )
    demo.add_argument(
        "--database-url",
        help="use this database instead of a temporary SQLite file (e.g. PostgreSQL)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the service up afterwards, until Ctrl-C, to look around",
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """`broadcaster demo`; returns the exit status."""
    out = out if out is not None else sys.stdout
    if not 10 <= args.followers <= 1_000_000:
        print("broadcaster demo: --followers must be between 10 and 1,000,000", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops the demo as Ctrl-C does: the service stops and the files go.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="broadcaster-demo-"))
    log_path = workdir / "broadcaster.log"
    keep_workdir = False
    log_file = log_path.open("w", encoding="utf-8")
    try:
        # The service logs JSON lines: to the file, leaving the terminal to the story.
        logs.configure("json", logging.INFO, log_file)
        status = _run(args, out, workdir, log_path)
        keep_workdir = status != 0
        return status
    except KeyboardInterrupt:
        print("\nstopped", file=out)
        return 130
    finally:
        log_file.close()
        if keep_workdir:
            print(f"the service's log is in {log_path}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: Stack.start says so
        return url


def _run(args: argparse.Namespace, out: TextIO, workdir: Path, log_path: Path) -> int:
    story = Story(out)
    given = args.database_url
    database_url = given or f"sqlite:///{workdir / 'broadcaster.db'}"
    secret_key = None
    if given and not given.startswith("sqlite"):
        # A server database needs a key for channel credentials: the configured one, or one
        # for this run (its channel cannot be read by a later run, which makes its own).
        secret_key = os.environ.get("BROADCASTER_SECRET_KEY") or secrets.token_urlsafe(32)
    # A fresh temporary database has only this shop; a given one may hold earlier runs.
    merchant = "merchants/demo-shop" + (f"-{secrets.token_hex(3)}" if given else "")
    story.say(
        f"broadcaster demo: a shop, a LINE Official Account with {args.followers:,} friends, "
        "and one broadcast"
    )
    shown = _without_password(given) if given else None
    story.say(f"  database: {shown or 'SQLite in ' + str(workdir)}; service logs: {log_path}")
    story.say("")
    stack = Stack(database_url, secret_key)
    try:
        try:
            stack.start()
        except Exception as e:  # bad --database-url, an outdated schema, a missing plugin…
            logging.getLogger("broadcaster").exception("the demo could not start the service")
            print(f"broadcaster demo: could not start the service: {e}", file=sys.stderr)
            return 1
        address = f"127.0.0.1:{stack.grpc_port}"
        story.step(
            f"service up: gRPC on {address}, HTTP on 127.0.0.1:{stack.http_port}; "
            f"LINE emulator on {stack.emulator.base_url}"
        )
        with grpc.insecure_channel(address) as channel:
            try:
                status = _story(stack, channel, story, merchant, args.followers)
            except grpc.RpcError as e:
                story.say("")
                print(f"broadcaster demo: a call failed: {console.describe(e)}", file=sys.stderr)
                return 1
            except DemoFailed as e:
                story.say("")
                print(f"broadcaster demo: {e}", file=sys.stderr)
                return 1
        story.say("")
        shop = merchant.removeprefix("merchants/")
        if not args.keep_running:
            story.say(f"done in {story.elapsed():.1f}s.")
            story.say(
                "To look further, run `broadcaster demo --keep-running`: the service then "
                "stays up until Ctrl-C, for"
            )
            _look_further(story, "<gRPC address>", "<HTTP address>", shop)
            return status
        story.say(f"done in {story.elapsed():.1f}s. The service keeps running; to look further:")
        _look_further(story, address, f"127.0.0.1:{stack.http_port}", shop)
        story.say(f"  less {log_path}    # the service's log (JSON lines)")
        story.say("press Ctrl-C to stop it")
        _wait_for_signal()
        story.say("stopping")
        return status
    finally:
        stack.stop()


def _look_further(story: Story, address: str, http: str, shop: str) -> None:
    story.say(f"  broadcaster broadcasts list --address {address} --merchant {shop}")
    story.say(f"  grpcurl -plaintext {address} list")
    story.say(f"  curl http://{http}/metrics")


def _wait_for_signal() -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM, even where the shell started us ignoring SIGINT."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _story(stack: Stack, channel: grpc.Channel, story: Story, merchant: str, followers: int) -> int:
    stubs = Stubs.bind(channel)
    demo = Demo(stack, stubs, story, merchant)
    account, line = demo.connect(followers)
    demo.sync(line)
    ids: list[str] = stack.call(stack.emulator.follower_ids, account)
    demo.interactions(account, line, ids)
    vip, repeat = demo.customers(line, ids)
    demo.estimates(
        line,
        [
            Audience("last 7 days · all customers", bpb.Audience.LAST_7_DAYS),
            Audience(f"last 30 days · {vip.display_name}", bpb.Audience.LAST_30_DAYS, vip.name),
            Audience(
                f"last 365 days · {repeat.display_name}", bpb.Audience.LAST_365_DAYS, repeat.name
            ),
            Audience("all contacts · all customers", bpb.Audience.ALL_CONTACTS),
        ],
    )
    sent = demo.send(line)
    demo.copy_as_draft(sent)
    story.step("the broadcast list (as the admin UI shows it):")
    story.say("")
    listing = argparse.Namespace(merchant=merchant, name_contains="", state=None, limit=10)
    client = console._Client(channel, (), CALL_TIMEOUT)
    listed = io.StringIO()
    console.list_broadcasts(client, listing, listed)
    story.say(_indent(listed.getvalue()))
    story.say("")
    messages, conversations = demo.events(sent.name)
    story.step(
        f"Message Center: {messages:,} broadcast message events in recipients' conversations, "
        f"{conversations:,} of them in new conversations (recipients who never chatted)"
    )
    return 0 if sent.state == bpb.Broadcast.SENT else 1
