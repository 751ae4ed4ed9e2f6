"""The public plugin API: everything a channel plugin may import from the core.

from broadcaster.channels import Channel, hookimpl, Capabilities, SendOutcome, ...
"""

from broadcaster.channels.errors import (
    ChannelError,
    ChannelUnavailable,
    ContactsNotListable,
    CredentialsInvalid,
    WebhookRejected,
)
from broadcaster.channels.hookspecs import hookimpl
from broadcaster.channels.posting import Answer, Poster, PostError, Target
from broadcaster.channels.protocol import (
    Channel,
    RenewsCredentials,
    ReportsStatistics,
    SetsWebhooks,
)
from broadcaster.channels.registry import ChannelRegistry, PluginError, UnknownChannelType
from broadcaster.channels.types import (
    AccountInfo,
    Capabilities,
    ChannelContact,
    ChannelRuntime,
    ContactPage,
    CredentialField,
    Eligibility,
    EventRefusal,
    InteractionEvent,
    InteractionKind,
    IssuedCredential,
    IssuedCredentials,
    MessageKind,
    Quota,
    RefusedEvent,
    SendBatch,
    SendOutcome,
    SendStatus,
    WebhookSetup,
)
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.errors import FieldViolation
from broadcaster.domain.messages import (
    AudioMessage,
    ChannelNativeMessage,
    ImageMessage,
    Message,
    StickerMessage,
    TextEmoji,
    TextMessage,
    VideoMessage,
    kind_of,
    shorten,
)
from broadcaster.domain.model import AccountTier, FollowerState
from broadcaster.domain.reasons import Reason
from broadcaster.domain.recipients import Recipients
from broadcaster.domain.statistics import BubbleStatistics, ChannelStatistics, UrlStatistics

__all__ = [
    "AccountInfo",
    "AccountTier",
    "Answer",
    "Audience",
    "AudioMessage",
    "BubbleStatistics",
    "Capabilities",
    "Channel",
    "ChannelContact",
    "ChannelError",
    "ChannelNativeMessage",
    "ChannelRegistry",
    "ChannelRuntime",
    "ChannelStatistics",
    "ChannelUnavailable",
    "ContactPage",
    "ContactsNotListable",
    "CredentialField",
    "CredentialsInvalid",
    "Eligibility",
    "EventRefusal",
    "FieldViolation",
    "FollowerState",
    "ImageMessage",
    "InteractionEvent",
    "InteractionKind",
    "InteractionWindow",
    "IssuedCredential",
    "IssuedCredentials",
    "Message",
    "MessageKind",
    "PluginError",
    "PostError",
    "Poster",
    "Quota",
    "Reason",
    "Recipients",
    "RefusedEvent",
    "RenewsCredentials",
    "ReportsStatistics",
    "SendBatch",
    "SendOutcome",
    "SendStatus",
    "SetsWebhooks",
    "StickerMessage",
    "Target",
    "TextEmoji",
    "TextMessage",
    "UnknownChannelType",
    "UrlStatistics",
    "VideoMessage",
    "WebhookRejected",
    "WebhookSetup",
    "hookimpl",
    "kind_of",
    "shorten",
]
