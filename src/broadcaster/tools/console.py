"""Operator commands that talk to a running server over gRPC, through `broadcaster_client`:

    broadcaster broadcasts list --merchant M     the broadcast list, as the admin UI shows it
                                                 (--channel, --channel-type, --sent-after,
                                                 --sent-before, --order-by)
    broadcaster broadcasts watch NAME            a live progress bar until it stops sending
    broadcaster broadcasts schedule NAME --at T  send a draft at T (ISO 8601, or +90s/+2h/+3d)
    broadcaster broadcasts unschedule NAME       a scheduled broadcast back to a draft
    broadcaster broadcasts stats NAME            its statistics as last read from its channel
    broadcaster channels sync NAME               sync a channel's contacts, showing progress
    broadcaster channels list --merchant M       channels with their webhook, follower list and
                                                 health (--needs-attention: only those)
    broadcaster groups members NAME              a customer group's customer ids, in order

`--address` (BROADCASTER_ADDRESS, default 127.0.0.1:50051) and `--token` (BROADCASTER_TOKEN;
prefer the variable: arguments show in `ps`). Exit status: 0 done, 1 the work failed or the
server refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

import grpc
from broadcaster_client import BroadcasterError, Client, connect, pages, retry
from broadcaster_client.v1 import broadcast_service_pb2 as bpb
from broadcaster_client.v1 import channel_service_pb2 as cpb
from broadcaster_client.v1 import customer_group_service_pb2 as gpb
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.tools.progress import Progress, table

T = TypeVar("T")
DEFAULT_ADDRESS = "127.0.0.1:50051"
# While watching, a server that restarts or a network blip is waited out this long.
PATIENCE_SECONDS = 30.0
_WAITED_OUT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Failed(Exception):
    """The command cannot go on; the message is for the operator."""


def add_commands(sub: Any) -> None:
    """Add `broadcasts`, `channels` and `groups` to the `broadcaster` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        default=os.environ.get("BROADCASTER_ADDRESS") or DEFAULT_ADDRESS,
        help="host:port of the gRPC server (BROADCASTER_ADDRESS, default %(default)s)",
    )
    common.add_argument(
        "--token", help="bearer token (default: BROADCASTER_TOKEN; the variable is safer)"
    )
    common.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per call (default %(default)s)"
    )
    polling = argparse.ArgumentParser(add_help=False)
    polling.add_argument(
        "--interval", type=float, default=1.0, help="seconds between readings (default 1)"
    )
    polling.add_argument("--merchant", help="merchant id, to give NAME as a bare id")

    broadcasts = sub.add_parser("broadcasts", help="list and watch broadcasts on a server")
    b = broadcasts.add_subparsers(dest="action", required=True)
    ls = b.add_parser("list", parents=[common], help="a merchant's broadcasts, newest first")
    ls.add_argument("--merchant", required=True, help="merchant id (or merchants/ID)")
    ls.add_argument("--name-contains", default="", help="only names containing this text")
    ls.add_argument(
        "--state",
        choices=[s.lower() for s, number in bpb.Broadcast.State.items() if number],
        help="only broadcasts in this state",
    )
    ls.add_argument("--channel", help="only this channel: merchants/M/channels/C, or C")
    ls.add_argument("--channel-type", default="", help="only channels of this type (line)")
    ls.add_argument(
        "--sent-after", type=_when, help="only those sent at or after (ISO 8601; local time)"
    )
    ls.add_argument("--sent-before", type=_when, help="only those sent before (ISO 8601)")
    ls.add_argument(
        "--order-by",
        default="create_time desc",
        choices=["create_time desc", "send_time desc", "schedule_time asc"],
        help="order (default: newest first; schedule_time asc: the upcoming ones)",
    )
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    watch = b.add_parser(
        "watch", parents=[common, polling], help="show a broadcast's progress until it ends"
    )
    watch.add_argument("name", help="merchants/M/broadcasts/B (or B with --merchant)")
    schedule = b.add_parser("schedule", parents=[common], help="send a draft at a given time")
    schedule.add_argument("name", help="merchants/M/broadcasts/B (or B with --merchant)")
    schedule.add_argument(
        "--at",
        required=True,
        help="when: ISO 8601 with its offset (2026-12-24T09:00+09:00), or +90s, +15m, +2h, +3d",
    )
    unschedule = b.add_parser(
        "unschedule", parents=[common], help="take a scheduled broadcast back to a draft"
    )
    unschedule.add_argument("name", help="merchants/M/broadcasts/B (or B with --merchant)")
    stats = b.add_parser(
        "stats", parents=[common], help="a broadcast's statistics as last read from its channel"
    )
    stats.add_argument("name", help="merchants/M/broadcasts/B (or B with --merchant)")
    stats.add_argument("--merchant", help="merchant id, to give NAME as a bare id")
    for parser in (schedule, unschedule):
        parser.add_argument("--merchant", help="merchant id, to give NAME as a bare id")
        parser.add_argument("--request-id", default="", help="idempotency key, to retry safely")

    channels = sub.add_parser("channels", help="channel operations on a server")
    c = channels.add_subparsers(dest="action", required=True)
    sync = c.add_parser(
        "sync", parents=[common, polling], help="sync a channel's contacts, showing progress"
    )
    sync.add_argument("name", help="merchants/M/channels/C (or C with --merchant)")
    cls = c.add_parser(
        "list", parents=[common], help="a merchant's channels with their health, newest first"
    )
    cls.add_argument("--merchant", required=True, help="merchant id (or merchants/ID)")
    cls.add_argument(
        "--needs-attention", action="store_true", help="only channels that need attention"
    )

    groups = sub.add_parser("groups", help="customer group operations on a server")
    g = groups.add_subparsers(dest="action", required=True)
    members = g.add_parser("members", parents=[common], help="a customer group's customer ids")
    members.add_argument("name", help="merchants/M/customerGroups/G (or G with --merchant)")
    members.add_argument("--merchant", help="merchant id, to give NAME as a bare id")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    token = args.token or os.environ.get("BROADCASTER_TOKEN") or None
    try:
        with connect(args.address, token) as client:
            calls = Calls(client, args.timeout)
            if args.command == "broadcasts" and args.action == "list":
                return list_broadcasts(calls, args, out)
            if args.command == "broadcasts" and args.action == "watch":
                return watch_broadcast(calls, args, out)
            if args.command == "broadcasts" and args.action == "schedule":
                return schedule_broadcast(calls, args, out)
            if args.command == "broadcasts" and args.action == "unschedule":
                return unschedule_broadcast(calls, args, out)
            if args.command == "broadcasts" and args.action == "stats":
                return broadcast_statistics(calls, args, out)
            if args.command == "channels" and args.action == "list":
                return list_channels(calls, args, out)
            if args.command == "groups":
                return list_members(calls, args, out)
            return sync_contacts(calls, args, out)
    except Failed as e:
        print(f"broadcaster: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped watching (the work goes on on the server)", file=sys.stderr)
        return 130


class Calls:
    """The client's stubs, each call with the command's timeout and a failure put in the
    operator's words (`Failed`)."""

    def __init__(self, client: Client, timeout: float) -> None:
        self.broadcasts = client.broadcasts
        self.channels = client.channels
        self.groups = client.customer_groups
        self._timeout = timeout

    def call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as e:
            raise Failed(describe(e)) from None

    def poll(self, method: Callable[..., T], request: Any) -> T:
        """`call`, waiting out a server that is briefly unreachable."""
        try:
            return retry(
                method,
                request,
                codes=_WAITED_OUT,
                attempts=None,
                patience=PATIENCE_SECONDS,
                pause=lambda _: 1.0,
                timeout=self._timeout,
            )
        except grpc.RpcError as e:
            raise Failed(describe(e)) from None


def describe(error: grpc.RpcError) -> str:
    """`NOT_FOUND: No broadcast … (BROADCAST_NOT_FOUND)` from a failed call."""
    if not isinstance(error, grpc.Call):
        return str(error)
    failed = BroadcasterError.from_rpc_error(error)
    code, message, reason = failed.code(), failed.details(), failed.reason
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the server: {message}"
    return f"{code.name}: {message}" + (f" ({reason})" if reason else "")


def _resource(value: str, merchant: str | None, collection: str) -> str:
    if value.startswith("merchants/"):
        return value
    if merchant and "/" not in value:
        return f"merchants/{merchant.removeprefix('merchants/')}/{collection}/{value}"
    raise Failed(f"give the full name, merchants/M/{collection}/ID, or --merchant M with ID")


def _when(text: str) -> Timestamp:
    """An ISO 8601 time for a filter; without an offset, the operator's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def _time(ts: Timestamp, present: bool) -> str:
    if not present:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def _sent_at(b: bpb.Broadcast) -> str:
    """When it was sent, or for a scheduled one when it will be."""
    if b.state == bpb.Broadcast.SCHEDULED:
        return "at " + _time(b.schedule_time, True)
    return _time(b.send_time, b.HasField("send_time"))


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(value: str, now: datetime) -> datetime:
    """`+90s`, `+15m`, `+2h`, `+3d` from `now`, or an ISO 8601 time with its UTC offset."""
    if value.startswith("+") and value[-1:] in _UNITS and value[1:-1].isdigit():
        return now + timedelta(seconds=int(value[1:-1]) * _UNITS[value[-1]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Failed(f"--at {value!r}: give an ISO 8601 time or +N s/m/h/d") from None
    if when.tzinfo is None:
        raise Failed(f"--at {value!r}: give the time's offset (Z, +09:00…)")
    return when


def schedule_broadcast(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "broadcasts")
    when = Timestamp()
    when.FromDatetime(parse_when(args.at, datetime.now(UTC)))
    request = bpb.ScheduleBroadcastRequest(
        name=name, schedule_time=when, request_id=args.request_id
    )
    b = calls.call(calls.broadcasts.ScheduleBroadcast, request)
    print(f"{b.display_name} ({name}) {_state(b)} {_sent_at(b)}", file=out)
    return 0


def unschedule_broadcast(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "broadcasts")
    request = bpb.UnscheduleBroadcastRequest(name=name, request_id=args.request_id)
    b = calls.call(calls.broadcasts.UnscheduleBroadcast, request)
    print(f"{b.display_name} ({name}) is a {_state(b)} again", file=out)
    return 0


def _state(b: bpb.Broadcast) -> str:
    return bpb.Broadcast.State.Name(b.state).lower()


def _sent(b: bpb.Broadcast) -> str:
    if b.state in (bpb.Broadcast.DRAFT, bpb.Broadcast.SCHEDULED):
        return "-"
    c = b.counters
    failed = f" ({c.failed:,} failed)" if c.failed else ""
    left_out = f" ({c.left_out_by_limit:,} left out by limit)" if c.left_out_by_limit else ""
    return f"{c.sent:,} / {c.total:,}{failed}{left_out}"


def list_broadcasts(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    parent = f"merchants/{args.merchant.removeprefix('merchants/')}"
    state = bpb.Broadcast.State.Value(args.state.upper() if args.state else "STATE_UNSPECIFIED")
    request = bpb.ListBroadcastsRequest(
        parent=parent,
        page_size=min(args.limit, 1000),
        display_name_contains=args.name_contains,
        state=state,
        channel=_resource(args.channel, parent, "channels") if args.channel else "",
        channel_type=args.channel_type,
        order_by=args.order_by,
    )
    if args.sent_after is not None:
        request.send_time_after.CopyFrom(args.sent_after)
    if args.sent_before is not None:
        request.send_time_before.CopyFrom(args.sent_before)
    found: list[bpb.Broadcast] = []
    more = False
    listing = pages(lambda r: calls.call(calls.broadcasts.ListBroadcasts, r), request)
    for page in listing if args.limit > 0 else ():
        room = args.limit - len(found)
        found += page.broadcasts[:room]
        if len(found) >= args.limit:
            more = len(page.broadcasts) > room or bool(page.next_page_token)
            break
    if not found:
        print(f"no broadcasts for {parent}", file=out)
        return 0
    rows = [
        [
            b.name.rsplit("/", 1)[-1],
            b.display_name,
            _sent_at(b),
            b.target_summary,
            _state(b),
            _sent(b),
            _engagement(b.statistics_summary),
        ]
        for b in found
    ]
    headers = ["ID", "NAME", "SENT AT", "TARGET", "STATE", "SENT / TOTAL", "OPENED / CLICKED"]
    print(table(headers, rows, limits=[0, 40, 0, 50, 0, 0, 0]), file=out)
    if more:
        print(f"… and more: raise --limit (now {args.limit})", file=out)
    return 0


def _figure(message: Any, field: str) -> str:
    """A figure as the operator reads it: withheld (unset) is never shown as 0."""
    return f"{getattr(message, field):,}" if message.HasField(field) else "withheld"


def _rate(message: Any, field: str) -> str:
    return f"{getattr(message, field):.1%}" if message.HasField(field) else "-"


def _engagement(summary: bpb.BroadcastStatisticsSummary) -> str:
    """The open and click rates of a broadcast's summary, as a list shows them."""
    if not summary.HasField("fetch_time"):
        return "-"
    return f"{_rate(summary, 'open_rate')} / {_rate(summary, 'click_rate')}"


def broadcast_statistics(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "broadcasts")
    s = calls.call(
        calls.broadcasts.GetBroadcastStatistics,
        bpb.GetBroadcastStatisticsRequest(name=f"{name}/statistics"),
    )
    print(f"{name}: {s.delivered:,} delivered", file=out)
    if s.unavailable_reason:
        print(f"no figures: {s.unavailable_reason}", file=out)
        return 0
    read = s.fetch_time.ToDatetime(UTC).astimezone().isoformat(timespec="seconds")
    print(f"read from the channel at {read}", file=out)
    rows = [
        ["opened", _figure(s, "unique_impressions"), _rate(s, "open_rate")],
        ["clicked", _figure(s, "unique_clicks"), _rate(s, "click_rate")],
        ["played media", _figure(s, "unique_media_plays"), "-"],
    ]
    print(table(["PEOPLE", "COUNT", "RATE"], rows, limits=[0, 0, 0]), file=out)
    if s.bubbles:
        bubbles = [
            [
                str(b.seq),
                _figure(b, "impressions"),
                _figure(b, "media_plays"),
                _figure(b, "unique_media_plays"),
                _figure(b, "unique_media_plays_completed"),
            ]
            for b in s.bubbles
        ]
        headers = ["BUBBLE", "IMPRESSIONS", "PLAYS", "PEOPLE PLAYED", "PLAYED TO THE END"]
        print(table(headers, bubbles, limits=[0, 0, 0, 0, 0]), file=out)
    if s.urls:
        urls = [
            [str(u.seq), u.url, _figure(u, "clicks"), _figure(u, "unique_clicks")] for u in s.urls
        ]
        headers = ["BUBBLE", "URL", "CLICKS", "PEOPLE CLICKED"]
        print(table(headers, urls, limits=[0, 60, 0, 0]), file=out)
    return 0


def follow_broadcast(
    b: bpb.Broadcast, fetch: Callable[[], bpb.Broadcast], progress: Progress, interval: float
) -> bpb.Broadcast:
    """Show `b`'s progress (sent and failed of total), fetching it again every `interval`
    seconds until it leaves SENDING; returns it as it ended."""
    while True:
        c = b.counters
        progress.update(c.sent + c.failed, c.total, f"({c.sent:,} sent, {c.failed:,} failed)")
        if b.state != bpb.Broadcast.SENDING:
            return b
        time.sleep(interval)
        b = fetch()


def watch_broadcast(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "broadcasts")
    request = bpb.GetBroadcastRequest(name=name)
    b = calls.call(calls.broadcasts.GetBroadcast, request)
    if b.state == bpb.Broadcast.DRAFT:
        raise Failed(f"{b.display_name!r} is a draft: nothing is being sent")
    progress = Progress(out)
    print(f"{b.display_name} ({name})", file=out)
    if b.state == bpb.Broadcast.SCHEDULED:
        print(f"scheduled {_sent_at(b)}: waiting for it", file=out)
    while b.state == bpb.Broadcast.SCHEDULED:
        time.sleep(args.interval)
        b = calls.poll(calls.broadcasts.GetBroadcast, request)
    b = follow_broadcast(
        b, lambda: calls.poll(calls.broadcasts.GetBroadcast, request), progress, args.interval
    )
    c = b.counters
    summary = f"{_state(b)}: {c.sent:,} of {c.total:,} sent, {c.failed:,} failed"
    if b.failure_reason:
        summary += f" ({b.failure_reason})"
    progress.finish(summary)
    return 0 if b.state == bpb.Broadcast.SENT else 1


def sync_contacts(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "channels")
    run = calls.call(calls.channels.SyncContacts, cpb.SyncContactsRequest(name=name))
    print(f"contact sync of {name}, started {_time(run.start_time, True)}", file=out)
    listing, profiles = Progress(out), Progress(out)
    listed = False
    while run.state == cpb.ContactSync.RUNNING:
        if not run.followers_complete:
            new = f"followers listed ({run.contacts_created:,} new)"
            listing.update(run.contacts_synced, None, new)
        else:
            if not listed:
                listed = True
                listing.finish(
                    f"listed {run.contacts_synced:,} followers ({run.contacts_created:,} new)"
                )
            profiles.update(run.profiles_fetched, run.contacts_synced, "profiles fetched")
        time.sleep(args.interval)
        channel = calls.poll(calls.channels.GetChannel, cpb.GetChannelRequest(name=name))
        run = channel.last_sync
    state = cpb.ContactSync.State.Name(run.state).lower()
    if run.state == cpb.ContactSync.SUCCEEDED:
        done = (
            f"succeeded: {run.contacts_synced:,} contacts listed, {run.contacts_created:,} new, "
            f"{run.contacts_unfollowed:,} no longer following, "
            f"{run.profiles_fetched:,} profiles fetched"
        )
    elif run.state == cpb.ContactSync.SKIPPED:
        done = f"skipped: {run.message}"
    else:
        done = f"{state}: {run.error_reason} {run.message}".rstrip()
    (profiles if listed else listing).finish(done)
    return 0 if run.state in (cpb.ContactSync.SUCCEEDED, cpb.ContactSync.SKIPPED) else 1


def _webhook(c: cpb.Channel) -> str:
    state = c.webhook.state
    return "-" if not state else cpb.WebhookStatus.State.Name(state).lower()


def _followers(c: cpb.Channel) -> str:
    f = c.follower_sync
    if not f.HasField("sync_time"):
        return "not listed"
    read = _time(f.sync_time, True)
    return f"{'complete' if f.complete else 'stale'}, read {read}"


def _health(c: cpb.Channel) -> str:
    if not c.health.needs_attention:
        return "ok"
    kinds = [cpb.ChannelIssue.Kind.Name(i.kind).lower() for i in c.health.issues]
    return ", ".join(kinds)


def list_channels(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    parent = f"merchants/{args.merchant.removeprefix('merchants/')}"
    request = cpb.ListChannelsRequest(
        parent=parent, page_size=1000, needs_attention=args.needs_attention
    )
    found = [
        c
        for page in pages(lambda r: calls.call(calls.channels.ListChannels, r), request)
        for c in page.channels
    ]
    if not found:
        what = "needing attention" if args.needs_attention else "connected"
        print(f"no channels {what} for {parent}", file=out)
        return 0
    rows = [
        [
            c.name.rsplit("/", 1)[-1],
            c.display_name,
            c.type,
            _webhook(c),
            _followers(c),
            _time(c.follower_sync.next_sync_time, c.follower_sync.HasField("next_sync_time")),
            _health(c),
        ]
        for c in found
    ]
    headers = ["ID", "NAME", "TYPE", "WEBHOOK", "FOLLOWERS", "NEXT SYNC", "HEALTH"]
    print(table(headers, rows, limits=[0, 30, 0, 0, 0, 0, 60]), file=out)
    return 0


def list_members(calls: Calls, args: argparse.Namespace, out: TextIO) -> int:
    name = _resource(args.name, args.merchant, "customerGroups")
    request = gpb.ListCustomerGroupMembersRequest(customer_group=name, page_size=1000)
    count = 0
    for page in pages(lambda r: calls.call(calls.groups.ListCustomerGroupMembers, r), request):
        for member in page.members:
            print(member.customer_id, file=out)
            count += 1
    print(f"{count:,} members", file=sys.stderr)
    return 0
