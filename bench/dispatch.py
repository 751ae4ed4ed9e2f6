"""Dispatch throughput: one broadcast to 1,000,000 LINE followers through the real service, and
our engine against the loop a user would otherwise write with LINE's official SDK.

    ./dev run python -m bench.dispatch [--backend sqlite|postgresql|both] [--smoke]
        [--recipients N] [--baseline N] [--plot docs/dispatch-throughput.png]

The LINE emulator runs in its own process with two verified accounts; `broadcaster serve` runs
in another on a fresh database. The engine's account gets N contacts (the emulator's follower
ids, written straight into the database so that no contact sync or profile fetching competes
for the CPU), then one broadcast (a text and an image bubble) is created and sent over gRPC.

Reported, from the emulator's own per-second counts of accepted multicast requests: the
sustained request rate against LINE's 200 requests/s ceiling (target >= 97 %), how many 429s
the emulator gave, the peak one-second window, the service's peak RSS (target <= 300 MB), and
that every follower received the broadcast exactly once.

Then, with 30 ms of emulated latency on every request, the same engine against a sequential
loop calling `MessagingApi.multicast` of `line-bot-sdk` with 500 ids at a time (200,000
followers each by default, on accounts of their own). Both are timed the same way, on the
emulator's clock from their first accepted request to their last, plus one request's
duration; the target is the engine >= 6x the loop's recipients/s. Also printed: the engine
from SendBroadcast (snapshot included) to the broadcast leaving SENDING.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from bench.live import ADMIN, emulator, memory_mb, service
from bench.results import record
from bench.settle import settle
from broadcaster.store.database import Database
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as cpb
from broadcaster.v1 import channel_service_pb2_grpc as cpb_grpc
from tests.databases import fresh_database

ENGINE = ("engine-token-0123456789", "engine-secret-0123456789")
LOOP = ("loop-token-0123456789", "loop-secret-0123456789")
BESIDE = ("beside-token-0123456789", "beside-secret-0123456789")  # the engine beside the loop
LATENCY = 0.03
CEILING = 200
IMAGE = "https://example.com/sale.jpg"


def _control(api: str, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{api}/_emulator/{path}",
        data=data,
        method=method or ("GET" if body is None else "PUT"),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _seed_contacts(
    url: str, merchant: str, channel_id: str, ids: list[str], *, talked: bool = False
) -> None:
    """The followers as contacts, in one INSERT … SELECT over a JSON array; `talked`: each has
    had a conversation with the account."""
    db = Database.from_url(url, threads=1)
    with db.writing() as conn:
        if conn.dialect.name == "postgresql":
            source = "jsonb_array_elements_text(CAST(:ids AS jsonb)) WITH ORDINALITY AS j(value, n)"
            padded = "lpad(CAST(n AS TEXT), 12, '0')"
        else:
            source = "(SELECT value, key AS n FROM json_each(:ids)) AS j"
            padded = "printf('%012d', n)"
        false = "false" if conn.dialect.name == "postgresql" else "0"
        chatted = ("true" if conn.dialect.name == "postgresql" else "1") if talked else false
        conn.execute(
            text(
                "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name,"
                " picture_uri, follower_state, state_time, last_interaction_time, opted_out,"
                " customer_id, has_conversation, observe_time, seen_sync, create_time,"
                f" update_time) SELECT :m || '-' || {padded}, :m, :ch, value, '', '', 1, 0, NULL,"
                f" {false}, NULL, {chatted}, 0, NULL, 0, 0 FROM {source}"
            ),
            {"m": merchant, "ch": channel_id, "ids": json.dumps(ids)},
        )
    db.close()


def _settle(url: str) -> None:
    """The seeded database as a merchant's would be by the time they send, its contacts synced
    long before (bench.settle)."""
    db = Database.from_url(url, threads=1)
    settle(db)
    db.close()


def _connect(channel: grpc.Channel, merchant: str, token: str, secret: str) -> str:
    made = cpb_grpc.ChannelServiceStub(channel).CreateChannel(
        cpb.CreateChannelRequest(
            parent=f"merchants/{merchant}",
            channel=cpb.Channel(
                type="line",
                credentials={"channel_access_token": token, "channel_secret": secret},
            ),
        ),
        metadata=ADMIN,
    )
    return made.name


def _draft(channel: grpc.Channel, merchant: str, channel_name: str) -> str:
    """A draft to all the channel's contacts: a text and an image bubble. Returns its name."""
    stub = bpb_grpc.BroadcastServiceStub(channel)
    draft = stub.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=f"merchants/{merchant}",
            broadcast=bpb.Broadcast(
                display_name="Winter sale",
                channel=channel_name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[
                    bpb.BroadcastMessage(text=bpb.TextContent(text="Winter sale: 30% off")),
                    bpb.BroadcastMessage(
                        image=bpb.ImageContent(original_content_uri=IMAGE, preview_image_uri=IMAGE)
                    ),
                ],
            ),
        ),
        metadata=ADMIN,
    )
    return draft.name


def _send_and_wait(channel: grpc.Channel, merchant: str, channel_name: str) -> tuple[float, Any]:
    stub = bpb_grpc.BroadcastServiceStub(channel)
    name = _draft(channel, merchant, channel_name)
    started = time.perf_counter()
    stub.SendBroadcast(bpb.SendBroadcastRequest(name=name), metadata=ADMIN)
    while True:
        b = stub.GetBroadcast(bpb.GetBroadcastRequest(name=name), metadata=ADMIN)
        if b.state != bpb.Broadcast.SENDING:
            return time.perf_counter() - started, b
        time.sleep(0.01)


def _sdk_loop(api: str, token: str, ids: list[str]) -> None:
    """What a user would write: LINE's SDK, one multicast of 500 ids after another."""
    from linebot.v3.messaging import (
        ApiClient,
        Configuration,
        ImageMessage,
        MessagingApi,
        MulticastRequest,
        TextMessage,
    )

    messages = [
        TextMessage(text="Winter sale: 30% off"),
        ImageMessage(original_content_url=IMAGE, preview_image_url=IMAGE),
    ]
    with ApiClient(Configuration(host=api, access_token=token)) as client:
        line = MessagingApi(client)
        for i in range(0, len(ids), 500):
            line.multicast(MulticastRequest(to=ids[i : i + 500], messages=messages))


def _sustained(per_second: dict[str, int]) -> tuple[float, int]:
    """Mean requests/s over the whole seconds between the first and last (partial) ones."""
    counts = [n for _, n in sorted((int(s), n) for s, n in per_second.items())]
    inner = counts[1:-1] or counts
    return sum(inner) / len(inner), len(counts)


def run(backend: str, recipients: int, baseline: int, plot: Path | None) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator(
            "--account", f"token={ENGINE[0]},secret={ENGINE[1]},tier=verified,"
            f"followers={recipients}",
            "--account", f"token={LOOP[0]},secret={LOOP[1]},tier=verified,followers={baseline}",
            "--account",
            f"token={BESIDE[0]},secret={BESIDE[1]},tier=verified,followers={baseline}",
        ) as (api, accounts),
        service(url, Path(tmp) / "serve.log", api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):  # fmt: skip
        engine_account, loop_account, beside_account = accounts
        name = _connect(channel, "bench", *ENGINE)
        ids = _control(api, f"accounts/{engine_account['channelId']}/followers")["userIds"]
        _seed_contacts(url, "bench", name.rsplit("/", 1)[1], ids)
        took, sent = _send_and_wait(channel, "bench", name)
        rss = memory_mb(server.process.pid)
        stats = _control(api, "stats")
        summary = _control(api, f"accounts/{engine_account['channelId']}/deliveries/summary")
        per_second = stats["acceptedPerSecond"][f"{engine_account['channelId']}/multicast"]
        rate, seconds = _sustained(per_second)
        limited = stats["rateLimited"].get("multicast", 0)
        assert sent.counters.sent == recipients, sent
        assert summary["usersReached"] == recipients and summary["usersReachedMoreThanOnce"] == 0
        print(
            f"{backend}: {recipients:,} recipients sent in {took:.1f} s "
            f"({recipients / took:,.0f} recipients/s); sustained {rate:.1f} multicast req/s = "
            f"{rate / CEILING:.1%} of LINE's {CEILING}/s over {seconds} s; peak 1 s window "
            f"{stats['peakRates']['multicast']['accepted']}; {limited} x 429; "
            f"service peak RSS {rss:.0f} MB; each follower exactly once"
        )
        record(
            "dispatch.throughput",
            backend,
            f"{rate:.1f} req/s = {100 * rate / CEILING:.1f} %, {limited} × 429, "  # noqa: RUF001
            f"{rss:.0f} MB ({recipients:,} in {took:.1f} s, each exactly once)",
            req_per_s=rate,
            share=rate / CEILING,
            rate_limited=limited,
            rss_mb=rss,
            recipients=recipients,
            seconds=took,
        )
        if plot is not None:
            _plot(per_second, plot, backend, recipients)

        # Side by side at 30 ms per request: the engine (a second broadcast) vs the SDK loop.
        _control(api, "faults", {"latency": LATENCY})
        loop_ids = _control(api, f"accounts/{loop_account['channelId']}/followers")["userIds"]
        _sdk_loop(api, LOOP[0], loop_ids)
        beside = _connect(channel, "bench-b", *BESIDE)
        beside_ids = _control(api, f"accounts/{beside_account['channelId']}/followers")["userIds"]
        _seed_contacts(url, "bench-b", beside.rsplit("/", 1)[1], beside_ids)
        engine_took, _ = _send_and_wait(channel, "bench-b", beside)
        spans = _control(api, "stats")["acceptedSpans"]
        ours, theirs = (
            baseline / _sending_time(spans[f"{account['channelId']}/multicast"])
            for account in (beside_account, loop_account)
        )
        print(
            f"{backend}: 30 ms latency, {baseline:,} recipients: engine {ours:,.0f} recipients/s "
            f"vs line-bot-sdk loop {theirs:,.0f} recipients/s = {ours / theirs:.1f}x "
            f"(first request to last; SendBroadcast to done: {baseline / engine_took:,.0f}/s)"
        )
        record(
            "dispatch.vs_sdk",
            backend,
            f"{ours / theirs:.1f}× ({ours:,.0f} vs {theirs:,.0f} recipients/s)",  # noqa: RUF001
            ratio=ours / theirs,
            engine_per_s=ours,
            loop_per_s=theirs,
            engine_send_to_done_per_s=baseline / engine_took,
            recipients=baseline,
        )


def _sending_time(span: dict[str, float]) -> float:
    """Seconds from the first accepted request to the last, plus the last one's duration."""
    return span["last"] - span["first"] + LATENCY


def _plot(per_second: dict[str, int], path: Path, backend: str, recipients: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((int(s), n) for s, n in per_second.items())
    start = points[0][0]
    xs = [s - start for s, _ in points]
    ys = [n for _, n in points]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(xs, ys, drawstyle="steps-post", label="accepted multicast requests/s")
    ax.axhline(CEILING, color="red", linestyle="--", label=f"LINE ceiling ({CEILING}/s)")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("requests / s")
    ax.set_ylim(0, CEILING * 1.15)
    ax.set_title(f"Dispatch of {recipients:,} recipients ({backend}), 500 per request")
    ax.legend(loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="20,000 and 5,000 recipients (CI)")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=200_000)
    parser.add_argument("--plot", type=Path, help="PNG of the throughput over time")
    args = parser.parse_args()
    recipients, baseline = (20_000, 5_000) if args.smoke else (args.recipients, args.baseline)
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        plot = args.plot
        if plot is not None and args.backend == "both":
            plot = plot.with_name(f"{plot.stem}-{backend}{plot.suffix}")
        run(backend, recipients, baseline, plot)


if __name__ == "__main__":
    main()
