"""A tiny channel that is not LINE, proving the core works with no LINE code loaded.

Register it with BROADCASTER_PLUGIN_MODULES=tests.fakechannel (or PluginManager(plugins=[...])).
Its account is described by its credentials, so a server in another process needs no shared
state: `token` (secret; "bad" is refused), `account`, `tier` (standard/verified/premium),
`followers` (how many it lists), `quota` (monthly limit; absent: unlimited), `page_delay_ms`
(how long each follower page takes), `send_delay_ms` (how long each send takes). Webhooks are JSON
`{"events": [{"id", "user", "kind", "ts"}]}` signed with hex HMAC-SHA256(token) in
`x-fake-signature`.

Sends land in `LEDGERS[token]` (in-process tests read it): who received what how often, and the
idempotency keys accepted, which are answered "already accepted" as LINE does. A recipient whose
id starts with `bad-` is refused as invalid; a `quota` is enforced; `Ledger.script` queues
answers for the next sends ("fail": a transient error; "lost": accepted, but the answer is lost
on the way back; "rate": too many requests; "reject": refused for good).

A test send (`send_test`) goes to each recipient alone, under a key per recipient derived from
its own, with the same rules (a `bad-` id refused, the quota enforced, a key answered "already
accepted"); "fail" in the script fails the next recipient transiently.

The `fake-stats` type is the same channel keeping statistics (ReportsStatistics): a batch sent
under a unit is counted under it, and `fetch_statistics` reports deterministic figures from
the recipients counted: people who opened (half of them) and clicked (a fifth), per bubble
and per URL (an `https://` word in a text bubble); a figure below `withhold_below` (default
5) is withheld (None), as are media plays (text bubbles have none). `statistics_units` caps
the distinct units an account may use: past it, batches go out without one and say
STATISTICS_ALLOWANCE_USED_UP. "unavailable" in `Ledger.statistics_script` fails the next read
(ChannelUnavailable), "none" makes it find no figures, "slow" makes it take 30 s; each read is
kept in
`Ledger.statistics_reads`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Self

from broadcaster.channels import (
    AccountInfo,
    AccountTier,
    Audience,
    BubbleStatistics,
    Capabilities,
    Channel,
    ChannelContact,
    ChannelNativeMessage,
    ChannelRegistry,
    ChannelRuntime,
    ChannelStatistics,
    ChannelUnavailable,
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
    Reason,
    ReportsStatistics,
    SendBatch,
    SendOutcome,
    SendStatus,
    TextMessage,
    UrlStatistics,
    WebhookRejected,
    hookimpl,
)

PAGE = 100
_KINDS = {k.value: k for k in InteractionKind}


@dataclass
class Ledger:
    """What one fake account received."""

    received: Counter[str] = field(default_factory=Counter)
    accepted_keys: dict[str, str] = field(default_factory=dict)  # key -> request id
    keys_seen: Counter[str] = field(default_factory=Counter)  # attempts per key
    script: list[str] = field(default_factory=list)
    used: int = 0
    revoked: bool = False  # the account refuses its credentials from now on
    attempts: int = 0  # send requests received
    sending: int = 0  # send requests not yet answered
    most_sending: int = 0  # the most at once
    # Statistics (fake-stats): recipients and bubbles counted under each unit, reads made
    # (unit, monotonic time), and answers queued for the next reads ("unavailable").
    units: Counter[str] = field(default_factory=Counter)
    unit_messages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    statistics_reads: list[tuple[str, float]] = field(default_factory=list)
    statistics_script: list[str] = field(default_factory=list)


LEDGERS: defaultdict[str, Ledger] = defaultdict(Ledger)


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
        CredentialField("send_delay_ms", "time each send takes", secret=False, required=False),
        CredentialField(
            "statistics_units", "distinct statistics units allowed", secret=False, required=False
        ),
        CredentialField(
            "withhold_below", "figures below this are withheld", secret=False, required=False
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

    async def check_messages(self, messages: Sequence[Message]) -> None:
        return None  # fake channels have no check of their own

    def preview_native(self, message: ChannelNativeMessage) -> str:
        raise AssertionError("fake channels declare no channel_native kind")

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
        used = LEDGERS[self._c["token"]].used
        if "quota" not in self._c:
            return Quota(limited=False, limit=None, used=used)
        return Quota(limited=True, limit=int(self._c["quota"]), used=used)

    async def send(self, batch: SendBatch) -> SendOutcome:
        ledger = LEDGERS[self._c["token"]]
        ledger.sending += 1
        ledger.most_sending = max(ledger.most_sending, ledger.sending)
        try:
            return await self._send(ledger, batch)
        finally:
            ledger.sending -= 1

    async def _send(self, ledger: Ledger, batch: SendBatch) -> SendOutcome:
        ledger.keys_seen[batch.idempotency_key] += 1
        ledger.attempts += 1
        delay = int(self._c.get("send_delay_ms", "0")) / 1000
        if delay:
            await asyncio.sleep(delay)
        earlier = ledger.accepted_keys.get(batch.idempotency_key)
        if earlier is not None:
            return SendOutcome(SendStatus.ALREADY_ACCEPTED, request_id=earlier)
        step = ledger.script.pop(0) if ledger.script else ""
        if step == "fail":
            return SendOutcome(SendStatus.RETRY_LATER, detail="fake 500")
        if step == "rate":
            return SendOutcome(SendStatus.RETRY_LATER, retry_after=0.01, rate_limited=True)
        if step == "rate-long":  # told to wait past the key window
            wait = 2.0 * self.capabilities.idempotency_window_seconds
            return SendOutcome(SendStatus.RETRY_LATER, retry_after=wait, rate_limited=True)
        if step == "reject":
            return SendOutcome(SendStatus.FATAL, detail="fake refusal")
        if step == "creds" or ledger.revoked:
            return SendOutcome(SendStatus.CREDENTIALS_REFUSED, detail="fake 401")
        bad = tuple(r for r in batch.recipients if r.startswith("bad-"))
        if bad:
            return SendOutcome(SendStatus.INVALID_RECIPIENTS, invalid_recipients=bad)
        if "quota" in self._c and ledger.used + len(batch.recipients) > int(self._c["quota"]):
            return SendOutcome(SendStatus.QUOTA_EXHAUSTED)
        request_id = str(uuid.uuid4())
        ledger.accepted_keys[batch.idempotency_key] = request_id
        ledger.received.update(batch.recipients)
        ledger.used += len(batch.recipients)
        unavailable = self._count_under(ledger, batch)
        if step == "lost":
            return SendOutcome(SendStatus.RETRY_LATER, detail="connection reset")
        return SendOutcome(
            SendStatus.ACCEPTED, request_id=request_id, statistics_unavailable=unavailable
        )

    def _count_under(self, ledger: Ledger, batch: SendBatch) -> str:
        """Count the batch under its statistics unit; the reason it is not, if it has one."""
        unit = batch.statistics_unit
        if not unit:
            return ""
        allowed = self._c.get("statistics_units")
        if unit not in ledger.units and allowed is not None and len(ledger.units) >= int(allowed):
            return Reason.STATISTICS_ALLOWANCE_USED_UP
        ledger.units[unit] += len(batch.recipients)
        ledger.unit_messages[unit] = tuple(
            m.text if isinstance(m, TextMessage) else "" for m in batch.messages
        )
        return ""

    async def send_test(self, batch: SendBatch) -> list[SendOutcome]:
        ledger = LEDGERS[self._c["token"]]
        outcomes = []
        for recipient in batch.recipients:
            key = f"{batch.idempotency_key}/{recipient}"
            ledger.attempts += 1
            earlier = ledger.accepted_keys.get(key)
            step = ledger.script.pop(0) if ledger.script else ""
            if earlier is not None:
                outcomes.append(SendOutcome(SendStatus.ALREADY_ACCEPTED, request_id=earlier))
            elif step == "fail":
                outcomes.append(SendOutcome(SendStatus.RETRY_LATER, detail="fake 500"))
            elif ledger.revoked:
                outcomes.append(SendOutcome(SendStatus.CREDENTIALS_REFUSED, detail="fake 401"))
            elif recipient.startswith("bad-"):
                outcomes.append(
                    SendOutcome(SendStatus.INVALID_RECIPIENTS, invalid_recipients=(recipient,))
                )
            elif "quota" in self._c and ledger.used + 1 > int(self._c["quota"]):
                outcomes.append(SendOutcome(SendStatus.QUOTA_EXHAUSTED))
            else:
                request_id = str(uuid.uuid4())
                ledger.accepted_keys[key] = request_id
                ledger.received[recipient] += 1
                ledger.used += 1
                outcomes.append(SendOutcome(SendStatus.ACCEPTED, request_id=request_id))
        return outcomes

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


class FakeStatsChannel(FakeChannel):
    """The fake channel, keeping statistics."""

    type: ClassVar[str] = "fake-stats"
    display_name: ClassVar[str] = "Fake with statistics"
    statistics_window: ClassVar[timedelta] = timedelta(days=14)
    statistics_requests_per_hour: ClassVar[float] = 36_000.0

    def statistics_unit(self, broadcast_id: str) -> str:
        return f"b{broadcast_id}"[:30]

    async def fetch_statistics(self, unit: str, sent: datetime) -> ChannelStatistics | None:
        ledger = LEDGERS[self._c["token"]]
        ledger.statistics_reads.append((unit, time.monotonic()))
        step = ledger.statistics_script.pop(0) if ledger.statistics_script else ""
        if step == "unavailable":
            raise ChannelUnavailable("fake statistics unavailable")
        if step == "slow":  # a read that takes a while (to be cut off)
            await asyncio.sleep(30)
        n = ledger.units.get(unit)
        if n is None or step == "none":
            return None
        floor = int(self._c.get("withhold_below", "5"))

        def shown(value: int) -> int | None:
            return value if value >= floor else None

        texts = ledger.unit_messages.get(unit, ())
        urls = tuple(
            UrlStatistics(seq, word, clicks=shown(n // 4), unique_clicks=shown(n // 5))
            for seq, text in enumerate(texts, 1)
            for word in text.split()
            if word.startswith("https://")
        )
        return ChannelStatistics(
            unique_impressions=shown(n // 2),
            unique_clicks=shown(n // 5) if urls else None,
            unique_media_plays=None,
            bubbles=tuple(
                BubbleStatistics(seq, impressions=shown(n // 2 + n // 10))
                for seq in range(1, len(texts) + 1)
            ),
            urls=urls,
        )


@hookimpl
def broadcaster_register_channels(registry: ChannelRegistry) -> None:
    registry.add(FakeChannel)
    registry.add(FakeStatsChannel)


# mypy checks here that the fake channels satisfy the protocols.
_conforms: type[Channel] = FakeChannel
_reports: type[ReportsStatistics] = FakeStatsChannel
