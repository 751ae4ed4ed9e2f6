"""Sending end to end: real `broadcaster serve` processes over gRPC, the LINE emulator as the
channel, and the emulator's own records as the judge of "every recipient exactly once".

Each test starts its own servers on this module's own database of the backend (tests isolated
by merchant and channel) and asserts exact numbers on both sides: the broadcast's counters and
deliveries, and what the emulator delivered, to whom, how often and with which retry keys. The
crash test comes last: the contact sync it interrupts may carry on in later servers.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from broadcaster_line_emulator import Faults, Phase
from broadcaster_line_emulator.faults import FaultInjector
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import event_service_pb2 as epb
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import (
    SENDING,
    A,
    Api,
    MulticastRecorder,
    Servers,
    Tables,
    merchant,
    quota_failure,
    reach,
    resource_id,
    summary,
    wait_for,
)

MULTICAST = frozenset({"multicast"})
BATCH = 500  # LINE's multicast maximum: the batch size
RATE_CEILING = 200  # LINE's multicast requests per second per channel


@pytest.fixture
def shared_database(own_database: str) -> str:
    """The module's database, for tests of several replicas sharing it (PostgreSQL)."""
    if not own_database.startswith("postgresql"):
        pytest.skip("several replicas share PostgreSQL only; SQLite is for one process")
    return own_database


@pytest.fixture
def servers(own_database: str, emulator: EmulatorThread, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(own_database, emulator, tmp_path)
    yield made
    made.stop_all()
    emulator.call(emulator.emulator.clear_faults)


def _followers(emulator: EmulatorThread, account: object) -> list[str]:
    return emulator.call(emulator.emulator.follower_ids, account)


# -- one malformed id in a batch of 500 -----------------------------------------------------------


def test_one_invalid_recipient_fails_alone(emulator: EmulatorThread, servers: Servers) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=499)
    api = servers.start()
    parent = merchant()
    made = api.connect(parent, account)
    followers = _followers(emulator, account)
    bad = "U-not-a-line-user-id"  # LINE ids are U + 32 hex digits: this one is malformed
    contacts = api.import_contacts(made.name, [*followers[:250], bad, *followers[250:]])
    bad_contact = next(c for c in contacts if c.external_id == bad)
    recorder = MulticastRecorder(emulator, account)
    try:
        draft = api.draft(parent, made.name, "One bad id must not fail 499 others")
        assert api.send(draft.name).counters.total == 500  # one batch
        done = api.finished(draft.name)
    finally:
        recorder.close()

    assert done.state == bpb.Broadcast.SENT
    c = done.counters
    assert (c.total, c.sent, c.failed, c.excluded) == (500, 499, 1, 0)
    failed = api.deliveries(draft.name, bpb.Delivery.FAILED)
    assert [(d.external_id, d.reason, d.contact) for d in failed] == [
        (bad, "INVALID_RECIPIENT", bad_contact.name)
    ]
    sent = api.deliveries(draft.name, bpb.Delivery.SENT)
    assert sorted(d.external_id for d in sent) == sorted(followers)

    got = reach(emulator, account)
    assert (got.sends, got.deliveries, got.users_reached, got.more_than_once) == (1, 499, 499, 0)
    assert got.reached_ids == frozenset(followers)
    # The channel refused the whole batch naming to[i]; the rest went again with the same key
    # (nothing had been accepted under it).
    attempts = recorder.attempts()
    assert [(a.status, a.recipients) for a in attempts] == [(400, 500), (200, 499)]
    assert len({a.retry_key for a in attempts}) == 1


# -- quota: refused at Send, running out mid-send, resending the rest -----------------------------


def test_quota_refused_then_exhausted_mid_send_then_resent(
    emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    # Kept small: on PostgreSQL tables not analyzed yet, the resend's estimate and snapshot
    # plan a nested loop quadratic in the channel's contacts (12,000 of 20,000: two minutes).
    people, fits = 3_000, 2  # 6 batches, 2 of which fit in the lowered quota
    account = emulator.call(emu.add_account, tier="verified", followers=people, quota=people - 1)
    api = servers.start()
    parent = merchant()
    made = api.connect(parent, account)
    followers = _followers(emulator, account)
    api.import_contacts(made.name, followers)
    draft = api.draft(parent, made.name, "Quota test: one message each")

    # Larger than the remaining quota: refused at Send, with the numbers.
    with pytest.raises(grpc.RpcError) as e:
        api.send(draft.name)
    code, reason, info, violations = quota_failure(e.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUOTA_EXCEEDED")
    assert (info.get("recipients"), info.get("quota_remaining")) == (str(people), str(people - 1))
    assert [v.subject for v in violations] == [made.name]
    assert str(people) in violations[0].description
    assert str(people - 1) in violations[0].description
    assert api.get(draft.name).state == bpb.Broadcast.DRAFT
    assert reach(emulator, account).sends == 0

    # Enough quota at Send; then the month's limit drops under it while the first requests
    # are on their way (latency holds each for 0.5 s): `fits` batches fit, the rest do not.
    emulator.call(emu.set_faults, Faults(latency=0.5, endpoints=MULTICAST), account)
    emulator.call(emu.set_quota, account, None)
    sending = api.send(draft.name)
    emulator.call(emu.set_quota, account, fits * BATCH + 250, usage=0)
    assert (sending.state, sending.counters.total) == (bpb.Broadcast.SENDING, people)
    done = api.finished(draft.name)
    emulator.call(emu.set_faults, None, account)

    got = reach(emulator, account)
    assert (got.sends, got.users_reached, got.more_than_once) == (fits, fits * BATCH, 0)
    assert (done.state, done.failure_reason) == (bpb.Broadcast.FAILED, "QUOTA_EXHAUSTED")
    c = done.counters
    assert (c.total, c.sent, c.failed) == (people, fits * BATCH, 0)
    assert c.sent == got.users_reached
    sent = {d.external_id for d in api.deliveries(draft.name, bpb.Delivery.SENT)}
    unsent = api.deliveries(draft.name, bpb.Delivery.NOT_SENT_QUOTA)
    unsent_ids = {d.external_id for d in unsent}
    assert sent == got.reached_ids
    assert len(unsent) == len(unsent_ids) == people - fits * BATCH
    assert unsent_ids == set(followers) - got.reached_ids
    assert not api.deliveries(draft.name, bpb.Delivery.FAILED)

    # The resend goes to exactly those, once the quota allows it (and not a message sooner).
    resend = api.broadcasts.CopyBroadcast(
        bpb.CopyBroadcastRequest(name=draft.name, unsent_only=True), metadata=A
    )
    assert (resend.state, resend.resend_of) == (bpb.Broadcast.DRAFT, draft.name)
    emulator.call(emu.set_quota, account, people - 1)  # one message short
    with pytest.raises(grpc.RpcError) as e:
        api.send(resend.name)
    code, reason, info, _ = quota_failure(e.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUOTA_EXCEEDED")
    assert (info.get("recipients"), info.get("quota_remaining")) == (
        str(len(unsent)),
        str(len(unsent) - 1),
    )
    emulator.call(emu.set_quota, account, people)  # exactly enough
    assert api.send(resend.name).counters.total == len(unsent)
    again = api.finished(resend.name)
    assert again.state == bpb.Broadcast.SENT
    c = again.counters
    assert (c.total, c.sent, c.failed) == (len(unsent), len(unsent), 0)
    assert {d.external_id for d in api.deliveries(resend.name)} == unsent_ids

    total = reach(emulator, account)
    assert (total.users_reached, total.more_than_once, total.deliveries) == (people, 0, people)
    assert summary(emulator, account)["quota"] == {"limit": people, "usage": people, "remaining": 0}


# -- Message Center events, with a consumer that keeps dropping its stream ------------------------


def test_events_consumer_resuming_mid_send_sees_each_delivery_once(
    emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    people = 5_000
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    api = servers.start()
    parent = merchant()
    made = api.connect(parent, account)
    contacts = api.import_contacts(made.name, _followers(emulator, account))
    # Answers spread over ~2 s so the consumer drops its stream while batches are recorded.
    slow = Faults(latency=0.3, spike_probability=0.5, spike_latency=1.5, endpoints=MULTICAST)
    emulator.call(emu.set_faults, slow, account)
    draft = api.draft(parent, made.name, "Events test")
    rng = random.Random()

    seen: list[epb.Event] = []
    drops = drops_mid_send = 0
    cursor = ""
    api.send(draft.name)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        take = rng.randint(1, 1500)
        stream = api.events.WatchEvents(
            epb.WatchEventsRequest(parent=parent, after_cursor=cursor),
            metadata=A,
            timeout=rng.uniform(0.2, 0.8),  # or the stream ends at a random moment
        )
        got = 0
        try:
            for event in stream:
                seen.append(event)
                cursor = event.cursor
                got += 1
                if got == take:
                    stream.cancel()
                    break
        except grpc.RpcError as dropped:
            assert dropped.code() in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ), dropped
        drops += 1
        if api.get(draft.name).state == bpb.Broadcast.SENDING:
            drops_mid_send += 1
        elif any(s.kind == epb.Event.BROADCAST_SENT for s in seen):
            break
    done = api.finished(draft.name)
    # Nothing more after the last cursor.
    tail = api.events.WatchEvents(
        epb.WatchEventsRequest(parent=parent, after_cursor=cursor), metadata=A, timeout=1.0
    )
    with pytest.raises(grpc.RpcError) as ended:
        extra = list(tail)
        pytest.fail(f"the stream ended on its own after {len(extra)} more events")
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    assert done.state == bpb.Broadcast.SENT and done.counters.sent == people
    assert drops_mid_send >= 3, f"only {drops_mid_send} disconnects happened mid-send"
    print(f"events test: {drops_mid_send} disconnects mid-send, {drops} in all")
    everyone = {c.name for c in contacts}
    for kind in (epb.Event.BROADCAST_MESSAGE, epb.Event.CONVERSATION_CREATED):
        # Once each: none of these contacts had a conversation before.
        times = Counter(e.contact for e in seen if e.kind == kind)
        repeated = sum(1 for n in times.values() if n > 1)
        assert (sum(times.values()), repeated) == (people, 0), epb.Event.Kind.Name(kind)
        assert set(times) == everyone, epb.Event.Kind.Name(kind)
    assert {e.broadcast for e in seen} == {draft.name}
    assert len(seen) == len({e.cursor for e in seen}) == 2 * people + 2
    # Its lifecycle around them, once each: sending first, sent last, with the final counters.
    assert (seen[0].kind, seen[-1].kind) == (epb.Event.BROADCAST_SENDING, epb.Event.BROADCAST_SENT)
    assert seen[-1].counters == done.counters and seen[0].counters.total == people
    listed: list[str] = []
    token = ""
    while True:
        page = api.events.ListEvents(
            epb.ListEventsRequest(parent=parent, page_size=1000, page_token=token), metadata=A
        )
        listed.extend(e.cursor for e in page.events)
        token = page.next_page_token
        if not token:
            break
    assert listed == [e.cursor for e in seen]


# -- faults: 5xx and resets before and after acceptance, a 429 burst, latency spikes --------------


def _fault_kinds(emulator: EmulatorThread) -> Counter[str]:
    return emulator.call(lambda: Counter(emulator.emulator.stats.faults))


def _replay(global_faults: Faults, channel_faults: Faults, batches: int) -> Counter[str]:
    """What the emulator will inject, replayed from the seeds: it draws one decision per
    request in arrival order (the global setting first), and every faulted request is tried
    again, so requests go on until `batches` of them got through."""
    outer, inner = FaultInjector(global_faults), FaultInjector(channel_faults)
    expected: Counter[str] = Counter()
    left = batches
    while left:
        decision = outer.decide("multicast").combine(inner.decide("multicast"))
        expected["requests"] += 1
        expected["spike"] += "spike" in decision.kinds
        if decision.rate_limited:
            expected["429"] += 1
        elif decision.error_status is not None:
            expected["5xx"] += 1
        elif decision.reset:
            expected["reset"] += 1
        else:
            left -= 1
    return expected


def test_faults_every_recipient_once_with_reused_retry_keys(
    emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    people = 20_000
    batches = people // BATCH
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    api = servers.start()
    parent = merchant()
    made = api.connect(parent, account)
    followers = _followers(emulator, account)
    api.import_contacts(made.name, followers)
    draft = api.draft(parent, made.name, "Fault test")

    # 5 % 5xx, half before and half after LINE accepted the request; 4 % resets, also both
    # ways; the first 5 requests rate limited; a tenth 200 ms slower. The channel's setting
    # adds to the global one, so both phases strike this channel. Seeded: the same faults every
    # run, several of each kind (`_replay` works out how many).
    before = Faults(
        error_rate=0.025, error_phase=Phase.BEFORE, reset_rate=0.02, reset_phase=Phase.BEFORE,
        endpoints=MULTICAST, seed=11,
    )  # fmt: skip
    after = Faults(
        error_rate=0.025, error_phase=Phase.AFTER, reset_rate=0.02, reset_phase=Phase.AFTER,
        burst_429=5, spike_probability=0.1, spike_latency=0.2, endpoints=MULTICAST, seed=33,
    )  # fmt: skip
    expected = _replay(before, after, batches)
    kinds_before = _fault_kinds(emulator)
    recorder = MulticastRecorder(emulator, account)
    try:
        emulator.call(emu.set_faults, before)
        emulator.call(emu.set_faults, after, account)
        api.send(draft.name)
        done = api.finished(draft.name)
    finally:
        emulator.call(emu.clear_faults)
        recorder.close()
    injected = _fault_kinds(emulator) - kinds_before

    assert done.state == bpb.Broadcast.SENT
    c = done.counters
    assert (c.total, c.sent, c.failed) == (people, people, 0)
    got = reach(emulator, account)
    assert (got.users_reached, got.more_than_once, got.deliveries) == (people, 0, people)
    assert (got.sends, got.retry_keys) == (batches, batches)

    chains = recorder.by_key()
    attempts = [a for chain in chains.values() for a in chain]
    statuses = Counter(a.status for a in attempts)
    observed = Counter(
        requests=len(attempts),
        spike=injected["spike"],
        **{"429": statuses[429]},
        **{"5xx": statuses[500] + statuses[502] + statuses[503]},
        reset=statuses[None],
    )
    # Exactly one more request per fault: each was retried once, nothing else was sent.
    assert observed == expected, (observed, expected)
    # One key per batch, used by every attempt of the batch, and accepted once.
    assert len(chains) == batches
    transient = {429, 500, 502, 503, None}
    for key, chain in chains.items():
        assert chain[-1].status in (200, 409), (key, chain)
        assert all(a.status in transient for a in chain[:-1]), (key, chain)
        assert {a.recipients for a in chain} == {BATCH}, (key, chain)
    accepted = emulator.call(lambda: {s.request_id for s in account.deliveries.sends})
    # A key accepted by a request whose answer was lost (5xx or reset after acceptance) was
    # answered 409 on a later attempt.
    lost_5xx = sum(a.status in (500, 502, 503) and a.request_id in accepted for a in attempts)
    lost = sum(any(a.status == 409 for a in chain) for chain in chains.values())
    phases = {
        "5xx, nothing delivered": observed["5xx"] - lost_5xx,
        "5xx after delivery": lost_5xx,
        "reset, nothing delivered": observed["reset"] - (lost - lost_5xx),
        "reset after delivery": lost - lost_5xx,
    }
    assert min(phases.values()) >= 1, phases
    reused = sum(len(chain) > 1 for chain in chains.values())
    assert reused >= 5, f"only {reused} batches needed a second attempt"
    print(f"fault test: {dict(observed)}, {phases}, {reused} keys used more than once")


# -- two replicas on PostgreSQL -------------------------------------------------------------------


def test_two_replicas_send_each_recipient_once_under_the_rate_ceiling(
    shared_database: str, emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    first, second = servers.start(), servers.start()
    shops = []
    for people, texts in ((10_000, ["Replicas A1", "Replicas A2", "Replicas A3"]),
                          (5_000, ["Replicas B1"])):  # fmt: skip
        account = emulator.call(emu.add_account, tier="verified", followers=people)
        parent = merchant()
        made = first.connect(parent, account)
        first.import_contacts(made.name, _followers(emulator, account))
        drafts = [first.draft(parent, made.name, text).name for text in texts]
        shops.append((account, made, people, texts, drafts))

    tables = Tables(shared_database)
    channel_ids = [resource_id(made.name) for _, made, *_ in shops]
    holders: dict[str, set[str]] = {c: set() for c in channel_ids}
    watching = threading.Event()

    def watch_leases() -> None:
        while not watching.is_set():
            for channel, owner in tables.lease_owners(channel_ids).items():
                holders[channel].add(owner.split(":")[0])  # the process part of the owner
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_leases, daemon=True)
    watcher.start()
    names = [name for *_, drafts in shops for name in drafts]
    jobs = [((first, second)[n % 2], name) for n, name in enumerate(names)]
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:  # all at once, on both replicas
            for sent in pool.map(lambda job: job[0].send(job[1]), jobs):
                assert sent.state == bpb.Broadcast.SENDING
        done = {name: first.finished(name) for _, name in jobs}
    finally:
        watching.set()
        watcher.join()
        tables.close()

    stats = emu.stats
    for account, made, people, texts, drafts in shops:
        for text, name in zip(texts, drafts, strict=True):
            b = done[name]
            assert b.state == bpb.Broadcast.SENT, name
            assert (b.counters.total, b.counters.sent, b.counters.failed) == (people, people, 0)
            got = reach(emulator, account, text)
            assert (got.users_reached, got.more_than_once, got.deliveries) == (people, 0, people)
            assert got.sends == got.retry_keys == people // BATCH
        channel_id = account.channel_id
        peak = emulator.call(stats.peak_rate, "multicast", channel_id)
        peak_received = emulator.call(
            lambda c=channel_id: stats.peak_rate("multicast", c, accepted=False)
        )
        limited = emulator.call(stats.count, "multicast", 429, channel_id)
        requests = emulator.call(stats.count, "multicast", None, channel_id)
        again = emulator.call(stats.count, "multicast", 409, channel_id)
        # No fault, no crash: a 409 would mean a second dispatcher sent a batch again.
        assert (again, requests) == (0, len(texts) * people // BATCH + limited), made.name
        assert peak <= RATE_CEILING and peak_received <= RATE_CEILING, (peak, peak_received)
        print(f"{made.name}: peak {peak}/{peak_received} multicast/s, {limited} rate limited")
        assert limited <= 3, f"{limited} multicast requests of {made.name} were rate limited"
    print(f"dispatching processes per channel: {holders}")


def test_channels_with_slow_answers_keep_their_requests_in_flight_together(
    emulator: EmulatorThread, servers: Servers
) -> None:
    """Every LINE channel's requests go to one host: a replica keeps each channel's batches in
    flight together, however many channels send at once (with 128 connections a host, six
    channels of 32 batches got 128 in all)."""
    emu = emulator.emulator
    people, channels = 32 * BATCH, 6  # a channel's 32 batches are in flight at once
    # Contacts are imported: no follower sync (with its profile reads) beside the sends.
    api = servers.start({"BROADCASTER_FOLLOWER_SYNC_INTERVAL": "off"})
    slow = Faults(latency=3.0, endpoints=MULTICAST)  # they all overlap, whatever the start
    shops = []
    for n in range(channels):
        account = emulator.call(emu.add_account, tier="verified", followers=people)
        emulator.call(emu.set_faults, slow, account)
        parent = merchant()
        made = api.connect(parent, account, synced=False)
        api.import_contacts(made.name, _followers(emulator, account))
        shops.append((account, api.draft(parent, made.name, f"Slow {n}").name))
    stats = emu.stats
    emulator.call(stats.count_in_progress_afresh)  # this test's requests, not earlier tests'
    with ThreadPoolExecutor(channels) as pool:  # at the same moment
        for sent in pool.map(lambda shop: api.send(shop[1]), shops):
            assert sent.state == bpb.Broadcast.SENDING
    done = [api.finished(name, timeout=120) for _, name in shops]

    for (account, name), b in zip(shops, done, strict=True):
        assert b.state == bpb.Broadcast.SENT and b.counters.sent == people, name
        got = summary(emulator, account)
        assert (got["usersReached"], got["usersReachedMoreThanOnce"]) == (people, 0)
        assert emulator.call(stats.most_in_progress, "multicast", account.channel_id) <= 32
        assert emulator.call(stats.count, "multicast", 429, account.channel_id) == 0
    together = emulator.call(stats.most_in_progress, "multicast")
    assert together > 128, f"at most {together} multicast requests were in flight at once"


def test_a_channel_answering_slowly_keeps_more_of_its_batches_in_flight(
    emulator: EmulatorThread, servers: Servers
) -> None:
    """A channel at its ceiling keeps its rate x LINE's answer time in flight: 32 were enough
    only while LINE answered within 160 ms. With 1 s answers the channel's bound grows past the
    32 it starts with (after the first answer), and never past 192."""
    emu = emulator.emulator
    people = 100 * BATCH
    api = servers.start({"BROADCASTER_FOLLOWER_SYNC_INTERVAL": "off"})
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    emulator.call(emu.set_faults, Faults(latency=1.0, endpoints=MULTICAST), account)
    parent = merchant()
    made = api.connect(parent, account, synced=False)
    api.import_contacts(made.name, _followers(emulator, account))
    name = api.draft(parent, made.name, "Slow answers").name
    assert api.send(name).state == bpb.Broadcast.SENDING
    b = api.finished(name, timeout=120)

    assert b.state == bpb.Broadcast.SENT and b.counters.sent == people
    got = summary(emulator, account)
    assert (got["usersReached"], got["usersReachedMoreThanOnce"]) == (people, 0)
    stats = emu.stats
    most = emulator.call(stats.most_in_progress, "multicast", account.channel_id)
    assert 32 < most <= 192, f"at most {most} of the channel's requests were in flight at once"
    assert emulator.call(stats.count, "multicast", 429, account.channel_id) == 0


def test_replicas_spread_channels_and_a_killed_ones_are_taken_over(
    shared_database: str, emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    people, channels = 2_000, 8
    first, second = servers.start(), servers.start()
    # Every answer takes a while: the kill lands with requests in flight.
    slow = Faults(latency=1.5, endpoints=MULTICAST)
    shops = []
    for n in range(channels):
        account = emulator.call(emu.add_account, tier="verified", followers=people)
        emulator.call(emu.set_faults, slow, account)
        parent = merchant()
        made = first.connect(parent, account)
        first.import_contacts(made.name, _followers(emulator, account))
        shops.append((account, first.draft(parent, made.name, f"Spread {n}").name))
    time.sleep(0.5)  # both replicas beat
    tables = Tables(shared_database)
    ids = [resource_id(first.get(name).channel) for _, name in shops]
    try:
        for _, name in shops:  # every Send reaches the first replica
            assert first.send(name).state == bpb.Broadcast.SENDING
        held: Counter[str] = Counter()

        def both_dispatch() -> bool:
            held.clear()
            held.update(owner.split(":")[0] for owner in tables.lease_owners(ids).values())
            return len(held) == 2 and sum(held.values()) == channels

        wait_for("both replicas to dispatch", both_dispatch, timeout=20, every=0.02)
        assert max(held.values()) <= channels // 2 + 1, held
        servers.kill(first)
        done = [second.finished(name, timeout=120) for _, name in shops]
    finally:
        tables.close()
    for (account, name), b in zip(shops, done, strict=True):
        assert b.state == bpb.Broadcast.SENT, name
        assert (b.counters.sent, b.counters.failed) == (people, 0), name
        got = summary(emulator, account)
        assert (got["usersReached"], got["usersReachedMoreThanOnce"]) == (people, 0), name


def _open_batch_owners(tables: Tables, broadcast_id: str) -> list[str]:
    with tables.engine.connect() as conn:
        return [
            str(owner)
            for owner in conn.execute(
                sa.text("SELECT lease_owner FROM batches WHERE broadcast_id = :b AND state <> 1"),
                {"b": broadcast_id},
            ).scalars()
            if owner
        ]


def _accepted(api: Api) -> float:
    """Multicast requests LINE accepted from this replica, from its /metrics."""
    url = f"http://127.0.0.1:{api.server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        lines = reply.read().decode().splitlines()
    series = 'broadcaster_channel_responses_total{channel_type="line",outcome="accepted"} '
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(series))


def _ready(api: Api) -> int:
    url = f"http://127.0.0.1:{api.server.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_a_replica_stopped_mid_send_drains_and_the_other_finishes_at_once(
    shared_database: str, emulator: EmulatorThread, servers: Servers
) -> None:
    """SIGTERM to the replica sending: it is not ready from then on, claims nothing more, has
    the batches with LINE answered and recorded, lets the channel and its unsent batches go,
    and exits 0; the other replica takes over at once (not after the lease's 5 s) and finishes,
    sending no batch again: LINE answers no "already accepted", and nobody gets it twice."""
    emu = emulator.emulator
    people = 50_000
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    # Every answer takes a while: the stop lands with requests in flight, which are answered.
    # At most 32 of them (32 requests a second): with the bound following the answer time, up
    # to 192 of the 100 batches would be on the wire, and the drain would finish the send.
    emulator.call(emu.set_faults, Faults(latency=1.0, endpoints=MULTICAST), account)
    at_most_32 = {"BROADCASTER_CHANNEL_IN_FLIGHT": "32"}
    replicas = [servers.start(at_most_32), servers.start(at_most_32)]
    parent = merchant()
    made = replicas[0].connect(parent, account)
    replicas[0].import_contacts(made.name, _followers(emulator, account))
    draft = replicas[0].draft(parent, made.name, "Drain: exactly once")
    broadcast, channel_id = resource_id(draft.name), resource_id(made.name)
    tables = Tables(shared_database)
    try:
        assert replicas[0].send(draft.name).state == bpb.Broadcast.SENDING
        wait_for("some batches", lambda: tables.progress(broadcast).sent > 0, timeout=30)
        owner = tables.lease_owners([channel_id])[channel_id].split(":")[0]
        # The replica sending is the one whose requests LINE answered.
        first, second = sorted(replicas, key=lambda api: -_accepted(api))
        first.server.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert _ready(first) == 503  # draining: load balancers stop sending it calls
        assert first.server.process.wait(timeout=30) == 0
        exited = time.monotonic() - stopped
        left = tables.progress(broadcast)
        assert left.state == SENDING and left.sent < people, "the stop was not mid-send"
        assert not [o for o in tables.lease_owners([channel_id]).values() if o.startswith(owner)]
        assert not [o for o in _open_batch_owners(tables, broadcast) if o.startswith(owner)]
        taken = wait_for(
            "the other replica to take over",
            lambda: (held := tables.lease_owners([channel_id]).get(channel_id)) and held,
            timeout=10,
            every=0.01,
        )
        took_over = time.monotonic() - stopped
        assert not taken.startswith(owner)
        done = second.finished(draft.name, timeout=120)
    finally:
        tables.close()
    print(f"drain: exited {exited:.2f} s after SIGTERM, taken over after {took_over:.2f} s")
    assert took_over < 4.0, took_over  # well before the 5 s lease could lapse
    assert done.state == bpb.Broadcast.SENT
    assert (done.counters.sent, done.counters.failed) == (people, 0)
    got = reach(emulator, account)
    assert (got.users_reached, got.more_than_once) == (people, 0)
    assert got.sends == got.retry_keys == people // BATCH  # no batch sent again
    assert emulator.call(emu.stats.count, "multicast", 409, account.channel_id) == 0


# -- scheduled broadcasts -------------------------------------------------------------------------


def _in(seconds: float) -> Timestamp:
    when = Timestamp()
    when.FromMicroseconds(time.time_ns() // 1000 + int(seconds * 1e6))
    return when


def _late(b: bpb.Broadcast) -> float:
    """Seconds from its schedule_time to its send_time."""
    return (b.send_time.ToMicroseconds() - b.schedule_time.ToMicroseconds()) / 1e6


def test_scheduled_on_a_replica_that_is_killed_fires_on_the_other_on_time(
    shared_database: str, emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    people = 1_000
    first, second = servers.start(), servers.start()
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    parent = merchant()
    made = first.connect(parent, account)
    first.import_contacts(made.name, _followers(emulator, account))
    names = [first.draft(parent, made.name, f"Scheduled {n}").name for n in range(3)]
    for name in names:  # every schedule reaches the first replica
        assert first.schedule(name, _in(4)).state == bpb.Broadcast.SCHEDULED
    servers.kill(first)
    done = [second.finished(name, timeout=60) for name in names]
    for b in done:
        assert b.state == bpb.Broadcast.SENT and b.counters.sent == people, b.name
        assert 0 <= _late(b) < 1.0, (b.name, _late(b))
    got = summary(emulator, account)
    assert (got["usersReached"], got["totalDeliveries"]) == (people, 3 * people)


def test_scheduled_across_a_restart_fires_once_when_a_server_is_back(
    emulator: EmulatorThread, servers: Servers
) -> None:
    """No server is up at its time: the next to start fires it, once (the time is durable)."""
    emu = emulator.emulator
    people = 200
    api = servers.start()
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    parent = merchant()
    made = api.connect(parent, account)
    api.import_contacts(made.name, _followers(emulator, account))
    name = api.draft(parent, made.name, "Across a restart").name
    api.schedule(name, _in(1.5))
    servers.kill(api)
    time.sleep(2.0)
    again = servers.start()
    b = again.finished(name, timeout=60)
    assert b.state == bpb.Broadcast.SENT and b.counters.sent == people
    assert _late(b) > 0.5  # it went when the server was back, not before its time
    got = summary(emulator, account)
    assert (got["usersReached"], got["usersReachedMoreThanOnce"]) == (people, 0)


# -- the crash test -------------------------------------------------------------------------------


def _grown(read: Callable[[], int], value: int) -> Callable[[], bool]:
    return lambda: read() > value


LATENCY = 0.4  # every multicast answer takes this long: requests are in flight at a kill
KILLS = 5


def test_killed_mid_send_every_follower_receives_it_exactly_once(
    own_database: str, emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    people = 20_000
    batches = people // BATCH
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    api = servers.start()
    parent = merchant()
    made = api.connect(parent, account)
    assert api.sync_followers(made.name).contacts_synced == people
    # Half the answers take twice as long: a process's answers arrive in two waves, so a kill
    # after the first recordings lands while the rest are still to come (recording is grouped,
    # and answers arriving together would be recorded in one transaction).
    slow = Faults(latency=LATENCY, spike_probability=0.5, spike_latency=LATENCY,
                  endpoints=MULTICAST)  # fmt: skip
    emulator.call(emu.set_faults, slow, account)
    draft = api.draft(parent, made.name, "Crash test: exactly once")
    broadcast = resource_id(draft.name)
    seed = int(os.environ.get("BROADCASTER_CRASH_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    tables = Tables(own_database)
    kills: list[tuple[str, float, int]] = []  # how, after how long, sent when killed
    try:
        sending = api.send(draft.name)
        assert (sending.state, sending.counters.total) == (bpb.Broadcast.SENDING, people)
        claimed = 0  # batch claims made before this process started
        for n in range(KILLS):
            if n:
                api = servers.start()  # same database; takes over once the dead lease expires
            left = tables.progress(broadcast)
            # This process has claimed batches: its requests are leaving now.
            wait_for(
                f"process {n} to claim batches",
                _grown(lambda: tables.progress(broadcast).attempts, claimed),
                timeout=30,
                every=0.005,
            )
            started = time.monotonic()
            if left.open_batches >= 12 and rng.random() < 0.5:
                # Kill while its answers are being recorded.
                how = "recording"
                wait_for(
                    f"process {n} to record a batch",
                    _grown(lambda: tables.progress(broadcast).sent, left.sent),
                    timeout=30,
                    every=0.005,
                )
                time.sleep(rng.uniform(0, 0.1))
            else:
                # Kill with requests in flight, before any answer (they take LATENCY).
                how = "in flight"
                time.sleep(rng.uniform(0.05, 0.6 * LATENCY))
            servers.kill(api)
            after = tables.progress(broadcast)
            kills.append((how, round(time.monotonic() - started, 3), after.sent))
            assert after.state == SENDING and after.sent < people, (
                f"kill {n} was not mid-send (seed {seed}): {kills}"
            )
            claimed = after.attempts
        api = servers.start()
        done = api.finished(draft.name, timeout=120)
    finally:
        tables.close()
    print(f"crash test seed {seed}: kills (how, seconds after claiming, sent) {kills}")

    assert done.state == bpb.Broadcast.SENT, (seed, kills)
    c = done.counters
    assert (c.total, c.sent, c.failed) == (people, people, 0), (seed, kills)
    for outcome in (bpb.Delivery.FAILED, bpb.Delivery.OUTCOME_UNKNOWN, bpb.Delivery.PENDING):
        assert not api.deliveries(draft.name, outcome), (outcome, seed, kills)
    emu_summary = summary(emulator, account)
    assert emu_summary["usersReached"] == people, (emu_summary, seed, kills)
    assert emu_summary["usersReachedMoreThanOnce"] == 0, (emu_summary, seed, kills)
    assert emu_summary["totalDeliveries"] == people == c.sent
    got = reach(emulator, account)
    assert (got.sends, got.retry_keys) == (batches, batches), (seed, kills)
    # Batches a killed process had on the wire were taken over with their keys.
    already = emulator.call(emu.stats.count, "multicast", 409, account.channel_id)
    assert already >= 1, (seed, kills)
