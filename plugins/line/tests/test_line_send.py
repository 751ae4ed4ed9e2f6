"""Sending a batch: every outcome, the retry key, and what the emulator recorded."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import aiohttp
import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.client import LineClient, LineReply
from broadcaster_line.sending import outcome_of
from broadcaster_line_emulator import Account, Faults, LineEmulator, Phase
from broadcaster_line_emulator.conformance import ConformanceRecorder

from broadcaster.channels import (
    ImageMessage,
    Message,
    Poster,
    SendBatch,
    SendOutcome,
    SendStatus,
    TextMessage,
)

MakeChannel = Callable[..., LineChannel]
IMAGE = "https://cdn.example.com/sale.png"
MESSAGES: tuple[Message, ...] = (TextMessage("Sale today 😀"), ImageMessage(IMAGE, IMAGE))


def batch(recipients: list[str], key: str | None = None) -> SendBatch:
    return SendBatch(recipients, MESSAGES, key or str(uuid.uuid4()))


def received_once(emulator: LineEmulator, shop: Account, users: list[str]) -> bool:
    return all(emulator.times_received(shop, u) == 1 for u in users)


async def test_a_batch_of_500_is_accepted_and_delivered_once(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(followers=500, quota=10_000)
    users = emulator.follower_ids(shop)

    outcome = await line_channel(shop).send(batch(users))

    assert outcome.status is SendStatus.ACCEPTED
    [delivery] = emulator.received(users[499], shop)
    assert outcome.request_id == delivery.request_id != ""
    assert list(delivery.messages) == [
        {"type": "text", "text": "Sale today 😀"},
        {"type": "image", "originalContentUrl": IMAGE, "previewImageUrl": IMAGE},
    ]
    assert received_once(emulator, shop, users)
    assert shop.quota.usage == 500  # one unit per recipient, whatever the bubble count
    conformance.assert_clean()


async def test_the_retry_key_is_the_idempotency_key_and_a_replay_is_already_accepted(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=50)
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    key = str(uuid.uuid4())

    first = await channel.send(batch(users, key))
    again = await channel.send(batch(users, key))

    assert first.status is SendStatus.ACCEPTED
    assert again.status is SendStatus.ALREADY_ACCEPTED
    assert again.request_id == first.request_id
    assert emulator.received(users[0], shop)[0].retry_key == key
    assert received_once(emulator, shop, users)
    assert len(shop.deliveries.sends) == 1


@pytest.mark.parametrize("fault", ["error", "reset"])
async def test_a_failure_after_acceptance_is_retried_safely(
    emulator: LineEmulator, line_channel: MakeChannel, fault: str
) -> None:
    shop = emulator.add_account(followers=20)
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    faults = (
        Faults(error_rate=1.0, error_statuses=(502,), error_phase=Phase.AFTER)
        if fault == "error"
        else Faults(reset_rate=1.0, reset_phase=Phase.AFTER)
    )
    emulator.set_faults(faults, shop)
    attempt = batch(users)

    lost = await channel.send(attempt)
    emulator.set_faults(None, shop)
    retried = await channel.send(attempt)

    assert lost.status is SendStatus.RETRY_LATER and not lost.rate_limited
    assert retried.status is SendStatus.ALREADY_ACCEPTED
    assert received_once(emulator, shop, users)


@pytest.mark.parametrize("fault", ["error", "reset"])
async def test_a_failure_before_acceptance_delivers_nothing_until_retried(
    emulator: LineEmulator, line_channel: MakeChannel, fault: str
) -> None:
    shop = emulator.add_account(followers=20)
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    emulator.set_faults(
        Faults(error_rate=1.0) if fault == "error" else Faults(reset_rate=1.0), shop
    )
    attempt = batch(users)

    lost = await channel.send(attempt)
    nothing_yet = shop.deliveries.total_deliveries
    emulator.set_faults(None, shop)
    retried = await channel.send(attempt)

    assert lost.status is SendStatus.RETRY_LATER
    assert nothing_yet == 0
    assert retried.status is SendStatus.ACCEPTED
    assert received_once(emulator, shop, users)


async def test_an_invalid_recipient_in_a_batch_of_500_is_named(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=499)
    users = emulator.follower_ids(shop)
    bad = "U-not-a-user"
    recipients = [*users[:137], bad, *users[137:]]
    assert len(recipients) == 500

    outcome = await line_channel(shop).send(batch(recipients))

    assert outcome.status is SendStatus.INVALID_RECIPIENTS
    assert outcome.invalid_recipients == (bad,)
    assert "to[137]" in outcome.detail
    assert shop.deliveries.total_deliveries == 0  # LINE sends nothing when a request fails


async def test_the_monthly_limit_is_quota_exhausted(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=500, quota=499)

    outcome = await line_channel(shop).send(batch(emulator.follower_ids(shop)))

    assert outcome.status is SendStatus.QUOTA_EXHAUSTED
    assert outcome.detail
    assert shop.deliveries.total_deliveries == 0


async def test_a_429_burst_is_retry_later_rate_limited(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=10)
    users = emulator.follower_ids(shop)
    channel = line_channel(shop)
    emulator.set_faults(Faults(burst_429=3), shop)
    attempt = batch(users)

    outcomes = [await channel.send(attempt) for _ in range(4)]

    assert [o.status for o in outcomes] == [SendStatus.RETRY_LATER] * 3 + [SendStatus.ACCEPTED]
    assert all(o.rate_limited and o.retry_after == 1.0 for o in outcomes[:3])
    assert received_once(emulator, shop, users)


async def test_the_endpoint_rate_limit_is_retry_later_rate_limited(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=1)
    channel = line_channel(shop)
    users = emulator.follower_ids(shop)

    # the emulator runs on a manual clock: its 200/s bucket does not refill by itself
    outcomes = [await channel.send(batch(users)) for _ in range(201)]

    assert {o.status for o in outcomes[:200]} == {SendStatus.ACCEPTED}
    assert outcomes[200].status is SendStatus.RETRY_LATER and outcomes[200].rate_limited


async def test_a_refused_token_is_credentials_refused(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=1)
    channel = line_channel(shop)
    emulator.revoke_token(shop)

    outcome = await channel.send(batch(emulator.follower_ids(shop)))

    assert outcome.status is SendStatus.CREDENTIALS_REFUSED
    assert "token" in outcome.detail
    assert shop.access_token not in outcome.detail


async def test_a_timeout_is_retry_later(
    emulator: LineEmulator, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(followers=1)
    emulator.set_faults(Faults(latency=0.3), shop)
    timeout = aiohttp.ClientTimeout(total=0.05)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        poster = Poster(4, timeout=0.05)
        for through in (None, poster):
            client = LineClient(session, shop.access_token, emulator.base_url, poster=through)
            channel = LineChannel(client, "s")

            outcome = await channel.send(batch(emulator.follower_ids(shop)))

            assert outcome.status is SendStatus.RETRY_LATER
            assert "TimeoutError" in outcome.detail
        await poster.close()
    assert not conformance.violations


async def test_a_refused_connection_is_retry_later(
    session: aiohttp.ClientSession, poster: Poster | None
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = LineClient(session, "token", f"http://127.0.0.1:{port}", poster=poster)
    channel = LineChannel(client, "secret")

    outcome = await channel.send(batch(["U" + "a" * 32]))

    assert outcome.status is SendStatus.RETRY_LATER


def reply(status: int, body: object = None, **headers: str) -> LineReply:
    return LineReply(
        status,
        body,
        request_id=headers.get("request_id", ""),
        accepted_request_id=headers.get("accepted", ""),
        retry_after=float(headers["retry_after"]) if "retry_after" in headers else None,
    )


TO = ["U" + c * 32 for c in "abc"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (reply(200, {}, request_id="r1"), SendOutcome(SendStatus.ACCEPTED, request_id="r1")),
        (
            reply(
                429,
                {"message": "The API rate limit has been exceeded. Try again later."},
                retry_after="7",
            ),
            SendOutcome(SendStatus.RETRY_LATER, retry_after=7.0, rate_limited=True),
        ),
        (reply(503, None), SendOutcome(SendStatus.RETRY_LATER)),
        (reply(500, {"message": "Internal Server Error"}), SendOutcome(SendStatus.RETRY_LATER)),
        (
            reply(
                400,
                {
                    "message": "The request body has 2 error(s)",
                    "details": [
                        {"message": "Invalid user ID", "property": "to[2]"},
                        {"message": "Invalid user ID", "property": "to[0]"},
                    ],
                },
            ),
            SendOutcome(SendStatus.INVALID_RECIPIENTS, invalid_recipients=(TO[2], TO[0])),
        ),
        (
            reply(400, {"message": "The property, to[1], in the request body is invalid"}),
            SendOutcome(SendStatus.INVALID_RECIPIENTS, invalid_recipients=(TO[1],)),
        ),
        (
            reply(
                400,
                {
                    "message": "The request body has 1 error(s)",
                    "details": [{"message": "May not be empty", "property": "messages[0].text"}],
                },
            ),
            SendOutcome(SendStatus.FATAL),
        ),
        (
            reply(403, {"message": "Access to this API is not available"}),
            SendOutcome(SendStatus.FATAL),
        ),
        (
            reply(401, {"message": "Authentication failed. Confirm that the access token"}),
            SendOutcome(SendStatus.CREDENTIALS_REFUSED),
        ),
        (reply(413, {"message": "Request Entity Too Large"}), SendOutcome(SendStatus.FATAL)),
        (reply(404, None), SendOutcome(SendStatus.FATAL)),
    ],
)
def test_how_each_answer_maps_to_an_outcome(answer: LineReply, expected: SendOutcome) -> None:
    outcome = outcome_of(answer, TO)

    assert (outcome.status, outcome.request_id, outcome.retry_after, outcome.rate_limited) == (
        expected.status,
        expected.request_id,
        expected.retry_after,
        expected.rate_limited,
    )
    assert outcome.invalid_recipients == expected.invalid_recipients
    if outcome.status is SendStatus.FATAL:
        assert str(answer.status) in outcome.detail


def test_a_409_reports_the_accepted_request() -> None:
    outcome = outcome_of(
        reply(
            409,
            {"message": "The retry key is already accepted"},
            accepted="first-id",
            request_id="second-id",
        ),
        TO,
    )

    assert outcome.status is SendStatus.ALREADY_ACCEPTED
    assert outcome.request_id == "first-id"


def test_403_says_the_credentials_were_refused() -> None:
    outcome = outcome_of(reply(403, {"message": "Forbidden"}), TO)

    assert "credentials" in outcome.detail


# -- test sends: a push per recipient ---------------------------------------------------------


async def test_a_test_send_pushes_to_each_recipient_with_an_outcome_each(
    emulator: LineEmulator, line_channel: MakeChannel, conformance: ConformanceRecorder
) -> None:
    shop = emulator.add_account(followers=3, quota=100)
    friend, blocked, other = emulator.follower_ids(shop)
    emulator.block(shop, blocked)
    stranger = "U" + "0" * 32  # well formed, but not a user of this account
    malformed = "U-not-a-line-id"
    channel = line_channel(shop)
    key = str(uuid.uuid4())

    outcomes = await channel.send_test(batch([friend, blocked, stranger, malformed], key))

    statuses = [o.status for o in outcomes]
    assert statuses == [
        SendStatus.ACCEPTED,
        SendStatus.ACCEPTED,  # LINE answers 200 for a user who blocked the account...
        SendStatus.INVALID_RECIPIENTS,
        SendStatus.INVALID_RECIPIENTS,
    ]
    assert [o.invalid_recipients for o in outcomes[2:]] == [(stranger,), (malformed,)]
    assert emulator.times_received(shop, friend) == 1
    assert emulator.times_received(shop, blocked) == 0  # ...but delivers nothing to them
    assert emulator.times_received(shop, other) == 0
    assert shop.quota.usage == 1  # only what was delivered counts

    again = await channel.send_test(batch([friend], key))  # the same test send, after a crash
    assert [o.status for o in again] == [SendStatus.ALREADY_ACCEPTED]
    assert emulator.times_received(shop, friend) == 1
    conformance.assert_clean()


async def test_a_test_send_past_the_quota_is_refused_per_recipient(
    emulator: LineEmulator, line_channel: MakeChannel
) -> None:
    shop = emulator.add_account(followers=2, quota=1)
    first, second = emulator.follower_ids(shop)
    channel = line_channel(shop)

    [one] = await channel.send_test(batch([first]))
    [two] = await channel.send_test(batch([second]))

    assert (one.status, two.status) == (SendStatus.ACCEPTED, SendStatus.QUOTA_EXHAUSTED)
    assert emulator.times_received(shop, second) == 0
