"""LINE webhooks (webhook.yml): authenticate the request, then reduce its events to what the core
records.

The signature comes first: `x-line-signature` must be the base64 HMAC-SHA256 of the raw body
keyed with the channel secret, compared in constant time. Nothing in the body is looked at
before that. An empty `events` array is LINE's connectivity check.

Only events from a user in a one-to-one chat (`source.type` "user" with a `userId`) concern
contacts; group and room events are skipped. follow, unfollow, message and postback map to
their kinds; other user actions (beacon, account link, video played, unsend, membership…) are
interactions of kind OTHER. Platform notices that no user caused (module channel activation,
bot suspension, PNP delivery completion) are skipped.

A signed event that is not what LINE sends is refused alone (a `RefusedEvent` in its place), so
the rest of the request is still recorded: a `userId` must match webhook.yml's user id pattern
`U[0-9a-f]{32}`, a `webhookEventId` must be a ULID (26 Crockford base-32 characters) and the
`timestamp` an integer number of milliseconds that a datetime can hold. Only a body that is not
LINE's shape at all (not JSON, no `events` array) fails the whole request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from broadcaster.channels import (
    EventRefusal,
    InteractionEvent,
    InteractionKind,
    RefusedEvent,
    WebhookRejected,
)

SIGNATURE_HEADER = "x-line-signature"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# webhook.yml: user ids are `U[0-9a-f]{32}`; webhookEventId is "a string in ULID format".
USER_ID = re.compile(r"U[0-9a-f]{32}")
WEBHOOK_EVENT_ID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)
_KINDS = {
    "follow": InteractionKind.FOLLOW,
    "unfollow": InteractionKind.UNFOLLOW,
    "message": InteractionKind.MESSAGE,
    "postback": InteractionKind.POSTBACK,
}
_NOT_USER_ACTIONS = frozenset(
    {"activated", "deactivated", "botSuspended", "botResumed", "delivery"}
)


class MalformedWebhook(ValueError):
    """A correctly signed body we cannot read. LINE signed it, so the fault is ours (or LINE
    changed its format): the core answers 500 and LINE may redeliver once it is fixed."""


def signature(channel_secret: str, body: bytes) -> str:
    digest = hmac.new(channel_secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():  # a plain dict is not case-insensitive
        if key.lower() == name:
            return candidate
    return None


def verify_signature(channel_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise WebhookRejected unless `x-line-signature` signs `body`."""
    given = _header(headers, SIGNATURE_HEADER)
    if not given:
        raise WebhookRejected("missing x-line-signature header")
    expected = signature(channel_secret, body).encode("ascii")
    if not hmac.compare_digest(expected, given.strip().encode("utf-8", "replace")):
        raise WebhookRejected("x-line-signature does not match the body")


def _event(raw: Any, index: int) -> InteractionEvent | RefusedEvent | None:
    if not isinstance(raw, dict):
        return RefusedEvent(EventRefusal.MALFORMED, f"events[{index}] is not an object")
    source = raw.get("source")
    if not isinstance(source, dict) or source.get("type") != "user":
        return None
    user_id = source.get("userId")
    kind = raw.get("type")
    if not isinstance(kind, str):
        return RefusedEvent(EventRefusal.MALFORMED, f"events[{index}] has no type")
    if user_id is None or kind in _NOT_USER_ACTIONS:
        return None
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        return RefusedEvent(EventRefusal.INVALID_ID, f"events[{index}].source.userId")
    event_id, timestamp = raw.get("webhookEventId"), raw.get("timestamp")
    if not isinstance(event_id, str) or not WEBHOOK_EVENT_ID.fullmatch(event_id):
        return RefusedEvent(EventRefusal.INVALID_ID, f"events[{index}].webhookEventId")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return RefusedEvent(EventRefusal.INVALID_TIMESTAMP, f"events[{index}].timestamp")
    try:
        when = _EPOCH + timedelta(milliseconds=timestamp)
    except OverflowError:
        return RefusedEvent(EventRefusal.INVALID_TIMESTAMP, f"events[{index}].timestamp")
    context = raw.get("deliveryContext")
    redelivery = isinstance(context, dict) and context.get("isRedelivery") is True
    return InteractionEvent(
        event_id=event_id,
        external_id=user_id,
        kind=_KINDS.get(kind, InteractionKind.OTHER),
        timestamp=when,
        is_redelivery=redelivery,
    )


def parse_webhook(
    channel_secret: str, headers: Mapping[str, str], body: bytes
) -> list[InteractionEvent | RefusedEvent]:
    """The events of one webhook request, each refused one in its place. Raises WebhookRejected
    (bad or missing signature) before reading the body, then MalformedWebhook if the signed body
    is not LINE's shape at all."""
    verify_signature(channel_secret, headers, body)
    try:
        payload = json.loads(body)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise MalformedWebhook(f"the signed webhook body is not JSON: {exc}") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise MalformedWebhook("the signed webhook body has no events array")
    out: list[InteractionEvent | RefusedEvent] = []
    for index, raw in enumerate(events):
        event = _event(raw, index)
        if event is not None:
            out.append(event)
    return out
