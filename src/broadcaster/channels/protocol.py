"""The Channel protocol: everything the core asks of a messaging channel.

A plugin registers a class (see hookspecs.broadcaster_register_channels); the core builds one
instance per connected channel account with `from_credentials` and calls the async methods below.
The core never imports a plugin's modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import ClassVar, Protocol, Self, runtime_checkable

from broadcaster.channels.types import (
    AccountInfo,
    Capabilities,
    ChannelContact,
    ChannelRuntime,
    ContactPage,
    CredentialField,
    Eligibility,
    InteractionEvent,
    Quota,
    RefusedEvent,
    SendBatch,
    SendOutcome,
    WebhookSetup,
)
from broadcaster.domain.audience import Audience
from broadcaster.domain.errors import FieldViolation
from broadcaster.domain.messages import ChannelNativeMessage, Message
from broadcaster.domain.statistics import ChannelStatistics


@runtime_checkable
class Channel(Protocol):
    #: The channel type's name in the API (`line`): lower case, unique among installed plugins.
    type: ClassVar[str]
    #: Human-readable name ("LINE").
    display_name: ClassVar[str]
    #: Static limits of this channel type.
    capabilities: ClassVar[Capabilities]
    #: Credentials `from_credentials` needs; secret ones are encrypted at rest.
    credential_fields: ClassVar[tuple[CredentialField, ...]]

    @classmethod
    def from_credentials(cls, credentials: Mapping[str, str], runtime: ChannelRuntime) -> Self:
        """An instance for one account. Must not do I/O; `connect` verifies."""
        ...

    async def connect(self) -> AccountInfo:
        """Verify the credentials and describe the account (and its tier). Raises
        CredentialsInvalid when the channel refuses them, ChannelUnavailable when unreachable."""
        ...

    def check_eligibility(self, audience: Audience, account: AccountInfo) -> Eligibility:
        """Whether this account may broadcast to `audience` at all."""
        ...

    def validate_messages(self, messages: Sequence[Message]) -> list[FieldViolation]:
        """Violations of the channel's message rules, with paths like `messages[2].text`
        (inside a channel-native bubble: `messages[2].channel_native.altText`). Only bubbles of
        the kinds the channel declares reach it."""
        ...

    async def check_messages(self, messages: Sequence[Message]) -> Sequence[FieldViolation] | None:
        """The channel's own check of messages that met `validate_messages` (LINE: its
        validation endpoint), asked when a draft is saved or estimated: the violations it
        names, in the same paths; None for a channel with no check of its own. Raise
        ChannelUnavailable when the channel cannot answer: the core then saves the draft anyway
        and says the check was unavailable."""
        ...

    def preview_native(self, message: ChannelNativeMessage) -> str:
        """A plain-text preview of a valid channel-native bubble, for lists and the Message
        Center (`[Card] Winter sale — 3 items`). Called only if `channel_native` is declared."""
        ...

    def sync_contacts(self, cursor: str | None) -> AsyncIterator[ContactPage]:
        """The account's contacts, page by page, starting after `cursor` (None: from the start).
        Raises ContactsNotListable for an account that may not list them."""
        ...

    async def fetch_profiles(self, external_ids: Sequence[str]) -> list[ChannelContact]:
        """Profiles for the given contacts; unknown ones are left out."""
        ...

    async def quota(self) -> Quota:
        """The message quota of the current period and how much of it is used."""
        ...

    async def send(self, batch: SendBatch) -> SendOutcome:
        """Send one batch. Expected failures are outcomes, never exceptions."""
        ...

    async def send_test(self, batch: SendBatch) -> Sequence[SendOutcome]:
        """Send `batch.messages` now to each of a few recipients (a test send: at most 10), and
        say what became of each: one outcome per recipient, in `batch.recipients` order. One
        recipient's failure must not stop the others. Each recipient counts against the quota
        as the channel counts it. The core does not retry; expected failures are outcomes,
        never exceptions. `batch.idempotency_key` is the same if the core sends it again after
        a crash: the channel should then answer ALREADY_ACCEPTED, not deliver twice."""
        ...

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes
    ) -> Sequence[InteractionEvent | RefusedEvent]:
        """Authenticate a webhook request (raise WebhookRejected) and extract its events; an
        event that cannot be recorded is a RefusedEvent in its place, so the rest
        of the request still is."""
        ...


@runtime_checkable
class SetsWebhooks(Protocol):
    """Optional: a channel whose API can set the account's webhook URL and test it. A channel
    class that has this method gets its webhook set up by the service on CreateChannel (when
    the service knows its public URL); one without it shows the URL to set by hand."""

    async def set_webhook(self, url: str) -> WebhookSetup:
        """Point the account's webhooks at `url`, then have the channel test it (its test
        request reaches this service's webhook route for the channel, signed as webhooks are).
        A URL the channel refuses, or a failed test, is a `WebhookSetup` that says so, not an
        exception; raises CredentialsInvalid or ChannelUnavailable like the other calls."""
        ...


@runtime_checkable
class RenewsCredentials(Protocol):
    """Optional, for a channel that issues its own credentials from the account's long-term
    ones (LINE: short-lived channel access tokens from the channel id and secret). It keeps
    them in `ChannelRuntime.credentials`; the core calls these besides the Channel methods."""

    async def renew_credentials(self, *, refused: bool = False) -> bool:
        """`refused=False`: renew the credential if it is due (the core's renewer calls this
        for channels whose credential is due, so idle channels keep a valid one). `refused=True`:
        the channel just refused the credential a send used (CREDENTIALS_REFUSED): get a new
        one. True when there is a credential worth trying; False when the channel has nothing
        to renew (say, connected with a long-lived credential). Raises CredentialsInvalid when
        the channel refuses the long-term credentials too, ChannelUnavailable when unreachable."""
        ...

    async def disconnect(self) -> None:
        """The channel was disconnected (DeleteChannel, committed): revoke what it issued, best
        effort. `ChannelRuntime.credentials.current()` still answers the last credential."""
        ...


@runtime_checkable
class ReportsStatistics(Protocol):
    """Optional, for a channel that can say how a broadcast's messages fared (opens, clicks).
    The core tags every batch of a broadcast with `statistics_unit(broadcast_id)` in
    `SendBatch.statistics_unit`, then reads the figures back with `fetch_statistics` in the
    background while they still change. A channel without it reports "statistics unavailable"
    and nothing else changes."""

    #: How long after a send the channel's figures can be read and keep changing (LINE: 14 days).
    statistics_window: ClassVar[timedelta]
    #: The channel's ceiling for `fetch_statistics` calls, per account (LINE: its insight
    #: endpoint's rate limit). The core paces its collection within it across replicas.
    statistics_requests_per_hour: ClassVar[float]

    def statistics_unit(self, broadcast_id: str) -> str:
        """The unit the broadcast's sends are counted under: derived from the broadcast's id
        alone (the same on every replica and attempt), within the channel's naming rules. No
        I/O. When the channel cannot count a batch under it (LINE: the account's monthly unit
        allowance is used up), the plugin sends the batch without it and says so in
        `SendOutcome.statistics_unavailable`; it never fails a send for statistics."""
        ...

    async def fetch_statistics(self, unit: str, sent: datetime) -> ChannelStatistics | None:
        """The figures so far for the sends counted under `unit`, the first of which went out
        at `sent`. None when the channel has none for the unit (yet). Raises ChannelUnavailable
        (try later: unreachable, rate limited) or CredentialsInvalid."""
        ...
