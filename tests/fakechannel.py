"""A tiny channel that is not LINE, proving the core works with no LINE code loaded.

Register it with BROADCASTER_PLUGIN_MODULES=tests.fakechannel (or PluginManager(plugins=[...])).
Its account is described by its credentials, so a server in another process needs no shared
state: `token` (secret; "bad" is refused), `account`, `tier` (standard/verified/premium),
`followers` (how many it lists), `quota` (monthly limit; absent: unlimited), `page_delay_ms`
(how long each follower page takes). Webhooks are JSON
`{"events": [{"id", "user", "kind", "ts"}]}` signed with hex HMAC-SHA256(token) in
`x-fake-signature`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Self

from broadcaster.channels import (
    AccountInfo,
    AccountTier,
    Audience,
    Capabilities,
    Channel,
    ChannelContact,
    ChannelRegistry,
    ChannelRuntime,
    ContactPage,
    ContactsNotListable,
    CredentialField,
    CredentialsInvalid,
    Eligibility,
    FieldViolation,
    InteractionEvent,
    InteractionKind,
    InteractionWindow,
    Message,
    MessageKind,
    Quota,
    SendBatch,
    SendOutcome,
    SendStatus,
    TextMessage,
    WebhookRejected,
    hookimpl,
)

PAGE = 100
_KINDS = {k.value: k for k in InteractionKind}


def sign(token: str, body: bytes) -> str:
    return hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class FakeChannel:
    type: ClassVar[str] = "fake"
    display_name: ClassVar[str] = "Fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_recipients_per_request=50,
        requests_per_second=100.0,
        max_messages=3,
        message_kinds=(MessageKind("text", {"max_length": 100}),),
        idempotency_window_seconds=3600,
        sync_requests_per_second=1000.0,
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("token", "the fake account's secret token"),
        CredentialField("account", "account id", secret=False),
        CredentialField("tier", "standard, verified or premium", secret=False, required=False),
        CredentialField("followers", "how many followers it lists", secret=False, required=False),
        CredentialField("quota", "monthly message limit", secret=False, required=False),
        CredentialField(
            "page_delay_ms", "time each follower page takes", secret=False, required=False
        ),
    )

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._c = dict(credentials)

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, str], runtime: ChannelRuntime) -> Self:
        return cls(credentials)

    @property
    def _tier(self) -> AccountTier:
        return AccountTier[self._c.get("tier", "standard").upper()]

    async def connect(self) -> AccountInfo:
        if self._c["token"] == "bad":
            raise CredentialsInvalid("token rejected")
        return AccountInfo(self._c["account"], f"Fake {self._c['account']}", self._tier)

    def check_eligibility(self, audience: Audience, account: AccountInfo) -> Eligibility:
        if (
            audience.window is InteractionWindow.ALL_CONTACTS
            and account.tier is AccountTier.STANDARD
        ):
            return Eligibility(False, "AUDIENCE_NOT_ELIGIBLE", "verify the fake account first")
        return Eligibility(True)

    def validate_messages(self, messages: Sequence[Message]) -> list[FieldViolation]:
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, TextMessage):
                out.append(FieldViolation(f"messages[{i}]", "fake channels take text only"))
            elif len(m.text) > 100:
                out.append(FieldViolation(f"messages[{i}].text", "at most 100 characters"))
        return out

    def _follower(self, n: int) -> str:
        return f"f-{self._c['account']}-{n:06d}"

    async def sync_contacts(self, cursor: str | None) -> AsyncIterator[ContactPage]:
        if self._tier is AccountTier.STANDARD:
            raise ContactsNotListable("fake standard accounts cannot list followers")
        total = int(self._c.get("followers", "0"))
        start = int(cursor or 0)
        delay = int(self._c.get("page_delay_ms", "0")) / 1000
        while start < total:
            if delay:
                await asyncio.sleep(delay)
            end = min(start + PAGE, total)
            page = [ChannelContact(self._follower(n)) for n in range(start, end)]
            yield ContactPage(page, str(end) if end < total else None)
            start = end

    async def fetch_profiles(self, external_ids: Sequence[str]) -> list[ChannelContact]:
        return [ChannelContact(e, display_name=f"Name of {e}") for e in external_ids]

    async def quota(self) -> Quota:
        if "quota" not in self._c:
            return Quota(limited=False, limit=None, used=0)
        return Quota(limited=True, limit=int(self._c["quota"]), used=0)

    async def send(self, batch: SendBatch) -> SendOutcome:
        return SendOutcome(SendStatus.ACCEPTED, request_id=str(uuid.uuid4()))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[InteractionEvent]:
        given = headers.get("x-fake-signature", "")
        if not hmac.compare_digest(given, sign(self._c["token"], body)):
            raise WebhookRejected("bad signature")
        return [
            InteractionEvent(
                event_id=e["id"],
                external_id=e["user"],
                kind=_KINDS[e["kind"]],
                timestamp=datetime.fromtimestamp(e["ts"] / 1000, UTC),
            )
            for e in json.loads(body)["events"]
        ]


@hookimpl
def broadcaster_register_channels(registry: ChannelRegistry) -> None:
    registry.add(FakeChannel)


# mypy checks here that FakeChannel satisfies the Channel protocol.
_conforms: type[Channel] = FakeChannel
