"""`broadcaster demo`: the whole job in one command, on embedded defaults.

It starts the LINE emulator and the real service in this process (`stack`: an event loop in a
background thread; gRPC and HTTP on loopback ports the system picks, SQLite in a temporary
directory), then acts as a client over real gRPC (`broadcaster_client`) and signed webhooks, as
the admin UI and LINE would:

1. connects a verified LINE Official Account with N friends and syncs its followers (`friends`);
2. posts signed webhook events (messages and postbacks spread over the last year, a few
   blocks) to the service's webhook endpoint (`friends`);
3. links contacts to customers, fills two customer groups, opts some contacts out (`customers`);
4. estimates a few audiences (`broadcast`);
5. sends the draft to one contact as a test, then a broadcast of a text, an image and a card
   carousel (a LINE flex message) to every contact, with a live progress bar;
6. schedules a copy of it for tomorrow, prints the broadcast list (the copy among the upcoming),
   takes the copy back to a draft, and counts the Message Center events the send recorded.

The service's logs (JSON lines) go to a file, so the terminal shows only the story (`story`).
Nothing leaves the machine: the "LINE Platform" is the emulator (`platform`, the one module that
imports it), and the image URLs are never fetched.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

import grpc
from broadcaster_client import connect
from broadcaster_client.v1 import broadcast_service_pb2 as bpb

from broadcaster import logs
from broadcaster.tools import console
from broadcaster.tools.demo import broadcast, customers, friends, platform
from broadcaster.tools.demo.broadcast import Audience
from broadcaster.tools.demo.shop import DEFAULT_FOLLOWERS, DemoFailed, Shop
from broadcaster.tools.demo.stack import Stack
from broadcaster.tools.demo.story import Story

__all__ = ["DEFAULT_FOLLOWERS", "DemoFailed", "add_command", "run"]


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
    try:
        platform.emulator()
    except DemoFailed as e:
        print(f"broadcaster demo: {e}", file=sys.stderr)
        return 1
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
        with connect(address) as client:
            try:
                status = _play(Shop(stack, client, story, merchant), args.followers)
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


def _play(shop: Shop, followers: int) -> int:
    """The story's six steps, in order; 0 when the broadcast was sent."""
    stack, story = shop.stack, shop.story
    account, line = friends.connect(shop, followers)
    friends.sync(shop, line)
    ids: list[str] = stack.call(stack.emulator.follower_ids, account)
    friends.interactions(shop, account, line, ids)
    vip, repeat = customers.customers(shop, line, ids)
    broadcast.estimates(
        shop,
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
    sent = broadcast.send(shop, line)
    broadcast.statistics(shop, sent)
    follow_up = broadcast.schedule(shop, broadcast.copy_as_draft(shop, sent))
    broadcast.broadcast_list(shop)
    broadcast.unschedule(shop, follow_up)
    messages, conversations = broadcast.events(shop, sent.name)
    story.step(
        f"Message Center: {messages:,} broadcast message events in recipients' conversations, "
        f"{conversations:,} of them in new conversations (recipients who never chatted)"
    )
    return 0 if sent.state == bpb.Broadcast.SENT else 1
