"""Errors a channel raises. Expected send failures are SendOutcomes, not exceptions."""

from __future__ import annotations


class ChannelError(Exception):
    """Base of channel errors. `message` is safe to show to the merchant (no secrets)."""


class CredentialsInvalid(ChannelError):
    """The channel refused the credentials (connect, or a later call)."""


class WebhookRejected(ChannelError):
    """A webhook request failed authentication (bad or missing signature): answer 401."""


class ChannelUnavailable(ChannelError):
    """The channel's API could not be reached or kept failing; try again later."""


class ContactsNotListable(ChannelError):
    """This account may not list its contacts (LINE: neither verified nor premium). The message
    says what the merchant can do; contacts are then learned from webhooks only."""
