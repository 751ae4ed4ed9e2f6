"""Multicast: one batch of up to 500 recipients per request, and what each answer means.

The hot path (200 requests/s of 500 ids each): the body is serialised once with `json.dumps`,
the bubbles' LINE JSON is cached per message tuple, and nothing else touches the recipients
unless LINE names some of them as invalid.

| LINE answers                                   | outcome                                   |
|------------------------------------------------|-------------------------------------------|
| 200                                            | ACCEPTED, request id `x-line-request-id`  |
| 409 (retry key already accepted)               | ALREADY_ACCEPTED, `x-line-accepted-request-id` |
| 429 "You have reached your monthly limit."     | QUOTA_EXHAUSTED                           |
| other 429                                      | RETRY_LATER, rate limited, Retry-After or 1 s |
| 5xx, timeout, reset, connection error          | RETRY_LATER (no delay: the core backs off) |
| 400 naming `to[i]`                             | INVALID_RECIPIENTS with those ids         |
| 400 naming `customAggregationUnits`            | sent again without the unit, same key     |
| other 400, 404, 413, other 4xx                 | FATAL with LINE's message                 |
| 401                                            | CREDENTIALS_REFUSED: the token was refused |
| 403                                            | FATAL: the credentials may not do this     |

A batch sent again without its unit that is accepted is marked STATISTICS_ALLOWANCE_USED_UP.

A test send (`send_test`) pushes to each of its few recipients: one request and one outcome
per recipient, so one bad id fails alone. Each push carries its own retry key, derived from the
test send's key and the recipient, so sending the same test again after a crash is answered 409
rather than delivered twice. A push answers as a multicast does, except that LINE names a bad
or unknown recipient as `to` (or answers "Failed to send messages"): INVALID_RECIPIENTS. A
push to a user who blocked the account is answered 200 but neither delivered nor counted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace

from broadcaster.channels import (
    ChannelUnavailable,
    FieldViolation,
    Message,
    Reason,
    Recipients,
    SendBatch,
    SendOutcome,
    SendStatus,
)
from broadcaster_line.client import LineClient, LineReply, failure
from broadcaster_line.retry import NETWORK_ERRORS
from broadcaster_line.rules import to_line_messages, violations_from_line
from broadcaster_line.statistics import is_unit_refusal

log = logging.getLogger(__name__)

MONTHLY_LIMIT = "You have reached your monthly limit."
DEFAULT_RATE_LIMIT_WAIT = 1.0
_RECIPIENT = re.compile(r"\bto\[(\d+)\]")


@functools.lru_cache(maxsize=64)
def _messages_json(messages: tuple[Message, ...]) -> str:
    return json.dumps(to_line_messages(messages), separators=(",", ":"))


def _silent(notification_disabled: bool) -> str:
    return ',"notificationDisabled":true' if notification_disabled else ""


def _unit(unit: str) -> str:
    return f',"customAggregationUnits":{json.dumps([unit])}' if unit else ""


def encode_multicast(
    recipients: Sequence[str],
    messages: Sequence[Message],
    notification_disabled: bool = False,
    unit: str = "",
) -> bytes:
    """The multicast request body `{"to": [...], "messages": [...]}` as UTF-8 JSON, with
    `"notificationDisabled": true` for a silent send and `"customAggregationUnits": [unit]`
    for a send counted under a statistics unit."""
    # ASCII JSON (non-ASCII escaped), so encoding cannot fail whatever the text holds; a
    # batch's ids as the store handed them over, when they are (Recipients.json_array).
    to = Recipients.of(recipients).json_array()
    body = f'{{"to":{to},"messages":{_messages_json(tuple(messages))}'
    return f"{body}{_silent(notification_disabled)}{_unit(unit)}}}".encode("ascii")


def encode_push(
    recipient: str, messages: Sequence[Message], notification_disabled: bool = False
) -> bytes:
    """The push request body `{"to": "...", "messages": [...]}` as UTF-8 JSON."""
    to_json = json.dumps(recipient)
    body = f'{{"to":{to_json},"messages":{_messages_json(tuple(messages))}'
    return f"{body}{_silent(notification_disabled)}}}".encode("ascii")


def push_retry_key(key: str, recipient: str) -> str:
    """The retry key of one recipient's push: the same for the same test send and recipient."""
    return str(uuid.uuid5(uuid.UUID(key), recipient))


def _invalid_recipients(reply: LineReply, recipients: Sequence[str]) -> tuple[str, ...]:
    error = reply.error
    texts = [*error.properties, error.message] if not error.properties else error.properties
    found: dict[str, None] = {}  # ordered and unique
    for text in texts:
        for match in _RECIPIENT.finditer(text):
            index = int(match.group(1))
            if index < len(recipients):
                found[recipients[index]] = None
    return tuple(found)


def outcome_of(reply: LineReply, recipients: Sequence[str]) -> SendOutcome:
    """What a multicast answer means for the batch (see the module docstring)."""
    status = reply.status
    if reply.ok:
        return SendOutcome(SendStatus.ACCEPTED, request_id=reply.request_id)
    error = reply.error
    if status == 409:
        return SendOutcome(
            SendStatus.ALREADY_ACCEPTED,
            request_id=reply.accepted_request_id,
            detail="LINE had already accepted this batch's retry key",
        )
    if status == 429:
        if error.message.strip() == MONTHLY_LIMIT:
            return SendOutcome(
                SendStatus.QUOTA_EXHAUSTED,
                detail="the LINE Official Account reached its monthly message limit",
            )
        wait = reply.retry_after if reply.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT
        return SendOutcome(
            SendStatus.RETRY_LATER,
            retry_after=wait,
            rate_limited=True,
            detail=f"LINE rate limit: {error.message or 'HTTP 429'}",
        )
    if status >= 500:
        return SendOutcome(
            SendStatus.RETRY_LATER,
            retry_after=reply.retry_after,
            detail=f"LINE answered {status}: {error.message or 'no message'}",
        )
    if status == 401:
        return SendOutcome(
            SendStatus.CREDENTIALS_REFUSED,
            detail=f"LINE refused the channel access token (401): {error.message or 'no message'}",
        )
    if status == 403:
        return SendOutcome(
            SendStatus.FATAL,
            detail=f"LINE refused the channel credentials ({status}): "
            f"{error.message or 'no message'}",
        )
    if status == 400:
        invalid = _invalid_recipients(reply, recipients)
        if invalid:
            return SendOutcome(
                SendStatus.INVALID_RECIPIENTS,
                invalid_recipients=invalid,
                detail=f"LINE rejected {len(invalid)} recipient id(s): {error.describe()}",
            )
    return SendOutcome(
        SendStatus.FATAL, detail=f"LINE rejected the request ({status}): {error.describe()}"
    )


async def send_batch(client: LineClient, batch: SendBatch, unit: str = "") -> SendOutcome:
    """Send one batch with its retry key, counted under the statistics `unit` if given. Never
    raises for network trouble: RETRY_LATER.

    When LINE refuses the unit (400 naming `customAggregationUnits`: the month's allowance of
    unit names is spent), the batch goes again at once without it, with the same retry key: a
    refused request is not accepted, so LINE does not remember its key, and keeping it keeps
    the batch safe from a second delivery. The outcome then says the batch is not counted."""
    body = encode_multicast(batch.recipients, batch.messages, batch.notification_disabled, unit)
    try:
        reply = await client.multicast(body, batch.idempotency_key)
        if unit and is_unit_refusal(reply):
            outcome = await send_batch(client, batch)  # without the unit
            if outcome.status is SendStatus.ACCEPTED:
                return replace(outcome, statistics_unavailable=Reason.STATISTICS_ALLOWANCE_USED_UP)
            return outcome
    except NETWORK_ERRORS as exc:
        # A timeout or reset may strike after LINE accepted the batch: the retry key makes the
        # next attempt safe (409 rather than a second delivery).
        return SendOutcome(
            SendStatus.RETRY_LATER, detail=f"network error talking to LINE: {type(exc).__name__}"
        )
    outcome = outcome_of(reply, batch.recipients)
    if outcome.status in (SendStatus.FATAL, SendStatus.CREDENTIALS_REFUSED):
        log.warning("LINE multicast failed: %s (request %s)", outcome.detail, reply.request_id)
    return outcome


FAILED_TO_SEND = "Failed to send messages"


def push_outcome_of(reply: LineReply, recipient: str) -> SendOutcome:
    """What a push answer means for its one recipient."""
    error = reply.error
    if reply.status == 400 and ("to" in error.properties or error.message == FAILED_TO_SEND):
        return SendOutcome(
            SendStatus.INVALID_RECIPIENTS,
            invalid_recipients=(recipient,),
            detail=f"LINE rejected the recipient: {error.describe()}",
        )
    return outcome_of(reply, [recipient])


async def _push_one(client: LineClient, recipient: str, batch: SendBatch) -> SendOutcome:
    key = batch.idempotency_key
    body = encode_push(recipient, batch.messages, batch.notification_disabled)
    try:
        reply = await client.push(body, push_retry_key(key, recipient))
    except NETWORK_ERRORS as exc:
        return SendOutcome(
            SendStatus.RETRY_LATER, detail=f"network error talking to LINE: {type(exc).__name__}"
        )
    return push_outcome_of(reply, recipient)


async def send_test(client: LineClient, batch: SendBatch) -> list[SendOutcome]:
    """Push the messages to each recipient at once; one outcome per recipient, in order."""
    return list(await asyncio.gather(*(_push_one(client, r, batch) for r in batch.recipients)))


async def check_with_line(client: LineClient, messages: Sequence[Message]) -> list[FieldViolation]:
    """LINE's own check of `messages` (its multicast validation endpoint): the violations it
    names, in the API's paths. Raises ChannelUnavailable (or CredentialsInvalid) when LINE
    cannot answer; nothing is sent."""
    body = f'{{"messages":{_messages_json(tuple(messages))}}}'.encode("ascii")
    try:
        reply = await client.validate_multicast(body)
    except NETWORK_ERRORS as exc:
        raise ChannelUnavailable(f"network error talking to LINE: {type(exc).__name__}") from exc
    if reply.ok:
        return []
    if reply.status == 400:
        return violations_from_line(reply.error.details, reply.error.message, messages)
    raise failure(reply, "validating the messages")
