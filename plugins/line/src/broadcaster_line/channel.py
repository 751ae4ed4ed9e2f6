"""`LineChannel`: the `line` channel type, one instance per connected LINE Official Account.

The core builds it with `from_credentials` (no I/O) and calls the `Channel` protocol's methods;
each delegates to the module that holds the LINE specifics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Self, TypeVar

from broadcaster.channels import (
    AccountInfo,
    Audience,
    Capabilities,
    Channel,
    ChannelContact,
    ChannelNativeMessage,
    ChannelRuntime,
    ChannelStatistics,
    ChannelUnavailable,
    ContactPage,
    CredentialField,
    CredentialsInvalid,
    Eligibility,
    FieldViolation,
    InteractionEvent,
    Message,
    MessageKind,
    Quota,
    Reason,
    RefusedEvent,
    RenewsCredentials,
    ReportsStatistics,
    SendBatch,
    SendOutcome,
    SendStatus,
    SetsWebhooks,
    WebhookSetup,
)
from broadcaster_line import account as line_account
from broadcaster_line import (
    native,
    rules,
    sending,
    statistics,
    tokens,
    webhook,
    webhook_setup,
)
from broadcaster_line.client import DEFAULT_API_BASE, LineClient
from broadcaster_line.contacts import ContactSync
from broadcaster_line.pacing import SYNC_BURST, SYNC_REQUESTS_PER_SECOND, TokenBucket
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy

API_BASE_ENV = "BROADCASTER_LINE_API_BASE"
ACCESS_TOKEN = "channel_access_token"
CHANNEL_SECRET = "channel_secret"
CHANNEL_ID = "channel_id"
ASSERTION_KEY = "assertion_private_key"
ASSERTION_KEY_ID = "assertion_key_id"
_CHANNEL_ID = re.compile(r"[0-9]{1,20}")
T = TypeVar("T")


class LineChannel:
    type: ClassVar[str] = "line"
    display_name: ClassVar[str] = "LINE"
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_recipients_per_request=500,
        requests_per_second=200.0,
        max_messages=rules.MAX_MESSAGES,
        message_kinds=(
            MessageKind(
                "text", {"max_text_utf16": rules.MAX_TEXT_UTF16, "max_emojis": rules.MAX_EMOJIS}
            ),
            MessageKind("image", {"max_url_length": rules.MAX_URL_LENGTH}),
            MessageKind("sticker"),
            MessageKind(
                "video",
                {
                    "max_url_length": rules.MAX_URL_LENGTH,
                    "max_tracking_id_length": rules.MAX_TRACKING_ID,
                },
            ),
            MessageKind("audio", {"max_url_length": rules.MAX_URL_LENGTH}),
            MessageKind(
                "channel_native",
                {
                    "max_alt_text_utf16": native.MAX_ALT_TEXT,
                    "max_template_alt_text_utf16": native.MAX_TEMPLATE_ALT_TEXT,
                    "max_quick_reply_items": native.MAX_QUICK_REPLY_ITEMS,
                    "max_imagemap_actions": native.MAX_IMAGEMAP_ACTIONS,
                    "max_template_columns": native.MAX_TEMPLATE_COLUMNS,
                    "max_flex_bubbles": native.MAX_FLEX_BUBBLES,
                    "max_flex_bubble_bytes": native.MAX_FLEX_BYTES,
                    "max_flex_carousel_bytes": native.MAX_FLEX_CAROUSEL_BYTES,
                },
            ),
        ),
        idempotency_window_seconds=24 * 60 * 60,
        sync_requests_per_second=2_000.0,
    )
    statistics_window: ClassVar[timedelta] = statistics.STATISTICS_WINDOW
    statistics_requests_per_hour: ClassVar[float] = statistics.STATISTICS_REQUESTS_PER_HOUR
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField(
            ACCESS_TOKEN,
            "Channel access token (long-lived), from the Messaging API tab of the channel in "
            "the LINE Developers Console; leave it out to give channel_id instead, and the "
            "service issues and renews short-lived tokens itself",
            required=False,
        ),
        CredentialField(
            CHANNEL_SECRET,
            "Channel secret, from the Basic settings tab of the channel in the LINE Developers "
            "Console; it authenticates LINE's webhooks",
        ),
        CredentialField(
            CHANNEL_ID,
            "Channel ID, from the Basic settings tab: with the channel secret, the service "
            "issues short-lived channel access tokens (30 days) and renews them before they "
            "expire, instead of using a long-lived token",
            secret=False,
            required=False,
        ),
        CredentialField(
            ASSERTION_KEY,
            "Assertion signing key (optional, with channel_id): the private RSA key, as a JWK "
            "(JSON), whose public half is registered in the LINE Developers Console; tokens "
            "are then issued with a signed JWT (channel access token v2.1)",
            required=False,
        ),
        CredentialField(
            ASSERTION_KEY_ID,
            "The key id (kid) the LINE Developers Console gave the assertion signing key",
            secret=False,
            required=False,
        ),
    )

    def __init__(
        self,
        client: LineClient,
        channel_secret: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        keeper: tokens.TokenKeeper | None = None,
    ) -> None:
        self._client = client
        self._secret = channel_secret
        self._retry = retry
        self._keeper = keeper  # None: a long-lived token the merchant gave
        bucket = TokenBucket(SYNC_REQUESTS_PER_SECOND, SYNC_BURST)
        self._contacts = ContactSync(client, bucket, retry)
        self._units = statistics.UnitAllowance(client)

    def __repr__(self) -> str:  # never show the credentials
        return f"LineChannel({self._client!r})"

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, str], runtime: ChannelRuntime) -> Self:
        token = credentials.get(ACCESS_TOKEN, "").strip()
        secret = credentials.get(CHANNEL_SECRET, "").strip()
        channel_id = credentials.get(CHANNEL_ID, "").strip()
        if not secret:
            raise CredentialsInvalid(f"a LINE channel needs {CHANNEL_SECRET}")
        if token and channel_id:
            raise CredentialsInvalid(
                f"give either {ACCESS_TOKEN} (a long-lived token) or {CHANNEL_ID} (short-lived "
                "tokens the service issues), not both"
            )
        if not token and not channel_id:
            raise CredentialsInvalid(f"a LINE channel needs {ACCESS_TOKEN} or {CHANNEL_ID}")
        base = runtime.env.get(API_BASE_ENV, DEFAULT_API_BASE)
        if token:
            return cls(LineClient(runtime.http, token, base, poster=runtime.poster), secret)
        if not _CHANNEL_ID.fullmatch(channel_id):
            raise CredentialsInvalid(f"{CHANNEL_ID} is the channel's number, digits only")
        client = LineClient(runtime.http, "", base, poster=runtime.poster)
        issuer = _issuer(credentials, channel_id, secret, runtime.env)
        store = runtime.credentials or tokens.MemoryCredentials()
        keeper = tokens.TokenKeeper(client, issuer, store, tokens.renew_margin(runtime.env))
        return cls(client, secret, keeper=keeper)

    @property
    def issues_tokens(self) -> bool:
        """Whether the channel issues its own short-lived tokens (not a long-lived one)."""
        return self._keeper is not None

    async def _fresh(self) -> None:
        if self._keeper is not None:
            await self._keeper.fresh()

    async def renew_credentials(self, *, refused: bool = False) -> bool:
        if self._keeper is None:
            return False
        if refused:
            return await self._keeper.renew_refused()
        await self._keeper.fresh()
        return True

    async def disconnect(self) -> None:
        if self._keeper is not None:
            await self._keeper.revoke()

    async def _renewing(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call` with a token that is not due; if LINE refuses an issued one (revoked in the
        console, say), once more with a renewed one."""
        await self._fresh()
        token = self._client.token
        try:
            return await call()
        except CredentialsInvalid:
            if self._keeper is None:
                raise
            self._keeper.last_refused = token
            if not await self._keeper.renew_refused():
                raise
        return await call()

    async def connect(self) -> AccountInfo:
        return await self._renewing(lambda: line_account.connect(self._client, self._retry))

    def check_eligibility(self, audience: Audience, account: AccountInfo) -> Eligibility:
        return line_account.check_eligibility(audience, account)

    def validate_messages(self, messages: Sequence[Message]) -> list[FieldViolation]:
        return rules.validate_messages(messages)

    async def check_messages(self, messages: Sequence[Message]) -> list[FieldViolation]:
        return await self._renewing(lambda: sending.check_with_line(self._client, messages))

    def preview_native(self, message: ChannelNativeMessage) -> str:
        return native.preview_native(message.data())

    async def sync_contacts(self, cursor: str | None) -> AsyncIterator[ContactPage]:
        await self._fresh()
        renewed = False  # an issued token LINE refuses is renewed once, and the list resumed
        while True:
            token = self._client.token
            try:
                async for page in self._contacts.pages(cursor):
                    yield page
                    cursor, renewed = page.cursor, False
                    await self._fresh()
                return
            except CredentialsInvalid:
                if self._keeper is None or renewed:
                    raise
                self._keeper.last_refused = token
                if not await self._keeper.renew_refused():
                    raise
                renewed = True

    async def fetch_profiles(self, external_ids: Sequence[str]) -> list[ChannelContact]:
        return await self._renewing(lambda: self._contacts.profiles(external_ids))

    async def quota(self) -> Quota:
        return await self._renewing(lambda: line_account.read_quota(self._client, self._retry))

    async def _ready_to_send(self) -> SendOutcome | None:
        """None when the client has a token to send with; else what the send came to."""
        try:
            await self._fresh()
        except CredentialsInvalid as e:
            return SendOutcome(SendStatus.CREDENTIALS_REFUSED, detail=str(e))
        except ChannelUnavailable as e:
            return SendOutcome(SendStatus.RETRY_LATER, detail=str(e))
        return None

    async def send(self, batch: SendBatch) -> SendOutcome:
        not_ready = await self._ready_to_send()
        if not_ready is not None:
            return not_ready
        token = self._client.token
        unit = batch.statistics_unit
        unavailable = ""
        if unit and not await self._units.admits(unit):
            unit, unavailable = "", Reason.STATISTICS_ALLOWANCE_USED_UP
        outcome = await sending.send_batch(self._client, batch, unit)
        if outcome.status is SendStatus.CREDENTIALS_REFUSED and self._keeper is not None:
            self._keeper.last_refused = token
        if outcome.statistics_unavailable:
            self._units.used_up()
        elif outcome.status is SendStatus.ACCEPTED and unit:
            self._units.used(unit)
        if unavailable and outcome.status is SendStatus.ACCEPTED:
            outcome = replace(outcome, statistics_unavailable=unavailable)
        return outcome

    def statistics_unit(self, broadcast_id: str) -> str:
        return statistics.unit_name(broadcast_id)

    async def fetch_statistics(self, unit: str, sent: datetime) -> ChannelStatistics | None:
        now = datetime.now(UTC)
        return await self._renewing(lambda: statistics.fetch(self._client, unit, sent, now))

    async def send_test(self, batch: SendBatch) -> list[SendOutcome]:
        not_ready = await self._ready_to_send()
        if not_ready is not None:
            return [not_ready for _ in batch.recipients]
        return await sending.send_test(self._client, batch)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes
    ) -> list[InteractionEvent | RefusedEvent]:
        return webhook.parse_webhook(self._secret, headers, body)

    async def set_webhook(self, url: str) -> WebhookSetup:
        return await webhook_setup.set_webhook(self._client, url, self._retry)


def _issuer(
    credentials: Mapping[str, str], channel_id: str, secret: str, env: Mapping[str, str]
) -> tokens.Issuer:
    private_jwk = credentials.get(ASSERTION_KEY, "").strip()
    key_id = credentials.get(ASSERTION_KEY_ID, "").strip()
    if not private_jwk and not key_id:
        return tokens.SecretIssuer(channel_id, secret)
    if not private_jwk or not key_id:
        raise CredentialsInvalid(f"give {ASSERTION_KEY} and {ASSERTION_KEY_ID} together")
    return tokens.AssertionIssuer(
        channel_id, secret, private_jwk, key_id, tokens.token_lifetime(env)
    )


# mypy checks here that LineChannel satisfies the Channel protocol (and renews its tokens).
_conforms: type[Channel] = LineChannel
_sets_webhooks: type[SetsWebhooks] = LineChannel
_renews: type[RenewsCredentials] = LineChannel
_reports: type[ReportsStatistics] = LineChannel
