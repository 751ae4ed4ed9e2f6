"""`LineChannel`: the `line` channel type, one instance per connected LINE Official Account.

The core builds it with `from_credentials` (no I/O) and calls the `Channel` protocol's methods;
each delegates to the module that holds the LINE specifics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import ClassVar, Self

from broadcaster.channels import (
    AccountInfo,
    Audience,
    Capabilities,
    Channel,
    ChannelContact,
    ChannelRuntime,
    ContactPage,
    CredentialField,
    CredentialsInvalid,
    Eligibility,
    FieldViolation,
    InteractionEvent,
    Message,
    MessageKind,
    Quota,
    RefusedEvent,
    SendBatch,
    SendOutcome,
    SetsWebhooks,
    WebhookSetup,
)
from broadcaster_line import account as line_account
from broadcaster_line import rules, sending, webhook, webhook_setup
from broadcaster_line.client import DEFAULT_API_BASE, LineClient
from broadcaster_line.contacts import ContactSync
from broadcaster_line.pacing import SYNC_BURST, SYNC_REQUESTS_PER_SECOND, TokenBucket
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy

API_BASE_ENV = "BROADCASTER_LINE_API_BASE"
ACCESS_TOKEN = "channel_access_token"
CHANNEL_SECRET = "channel_secret"


class LineChannel:
    type: ClassVar[str] = "line"
    display_name: ClassVar[str] = "LINE"
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_recipients_per_request=500,
        requests_per_second=200.0,
        max_messages=rules.MAX_MESSAGES,
        message_kinds=(
            MessageKind("text", {"max_text_utf16": rules.MAX_TEXT_UTF16}),
            MessageKind("image", {"max_url_length": rules.MAX_URL_LENGTH}),
        ),
        idempotency_window_seconds=24 * 60 * 60,
        sync_requests_per_second=2_000.0,
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField(
            ACCESS_TOKEN,
            "Channel access token (long-lived), from the Messaging API tab of the channel in "
            "the LINE Developers Console",
        ),
        CredentialField(
            CHANNEL_SECRET,
            "Channel secret, from the Basic settings tab of the channel in the LINE Developers "
            "Console; it authenticates LINE's webhooks",
        ),
    )

    def __init__(
        self, client: LineClient, channel_secret: str, *, retry: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        self._client = client
        self._secret = channel_secret
        self._retry = retry
        bucket = TokenBucket(SYNC_REQUESTS_PER_SECOND, SYNC_BURST)
        self._contacts = ContactSync(client, bucket, retry)

    def __repr__(self) -> str:  # never show the credentials
        return f"LineChannel({self._client!r})"

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, str], runtime: ChannelRuntime) -> Self:
        token = credentials.get(ACCESS_TOKEN, "").strip()
        secret = credentials.get(CHANNEL_SECRET, "").strip()
        missing = [n for n, v in ((ACCESS_TOKEN, token), (CHANNEL_SECRET, secret)) if not v]
        if missing:
            raise CredentialsInvalid(f"a LINE channel needs {' and '.join(missing)}")
        base = runtime.env.get(API_BASE_ENV, DEFAULT_API_BASE)
        return cls(LineClient(runtime.http, token, base), secret)

    async def connect(self) -> AccountInfo:
        return await line_account.connect(self._client, self._retry)

    def check_eligibility(self, audience: Audience, account: AccountInfo) -> Eligibility:
        return line_account.check_eligibility(audience, account)

    def validate_messages(self, messages: Sequence[Message]) -> list[FieldViolation]:
        return rules.validate_messages(messages)

    def sync_contacts(self, cursor: str | None) -> AsyncIterator[ContactPage]:
        return self._contacts.pages(cursor)

    async def fetch_profiles(self, external_ids: Sequence[str]) -> list[ChannelContact]:
        return await self._contacts.profiles(external_ids)

    async def quota(self) -> Quota:
        return await line_account.read_quota(self._client, self._retry)

    async def send(self, batch: SendBatch) -> SendOutcome:
        return await sending.send_batch(self._client, batch)

    async def send_test(self, batch: SendBatch) -> list[SendOutcome]:
        return await sending.send_test(self._client, batch)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[InteractionEvent | RefusedEvent]:
        return webhook.parse_webhook(self._secret, headers, body)

    async def set_webhook(self, url: str) -> WebhookSetup:
        return await webhook_setup.set_webhook(self._client, url, self._retry)


# mypy checks here that LineChannel satisfies the Channel protocol.
_conforms: type[Channel] = LineChannel
_sets_webhooks: type[SetsWebhooks] = LineChannel
