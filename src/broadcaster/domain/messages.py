"""The bubbles of a broadcast. Channel plugins decide which kinds they take and their limits.

The kinds most channels share are plain values here; `ChannelNativeMessage` carries a message in
one channel's own format (JSON text, kept and forwarded as given) that only its plugin reads.
Every value is frozen and hashable, so bubbles can key caches.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

# The kind names channels declare (`MessageKind.kind`), as the API's BroadcastMessage fields.
TEXT, IMAGE, STICKER, VIDEO, AUDIO, CHANNEL_NATIVE = (
    "text",
    "image",
    "sticker",
    "video",
    "audio",
    "channel_native",
)
# The `text` kind's limit that says the channel takes emoji in text (and how many).
MAX_EMOJIS = "max_emojis"
PREVIEW_TEXT_LENGTH = 100


@dataclass(frozen=True, slots=True)
class TextEmoji:
    """A channel emoji standing in for the `$` at `index` (UTF-16 code units) of a text."""

    index: int
    product_id: str
    emoji_id: str


@dataclass(frozen=True, slots=True)
class TextMessage:
    text: str
    emojis: tuple[TextEmoji, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageMessage:
    original_content_uri: str
    preview_image_uri: str


@dataclass(frozen=True, slots=True)
class StickerMessage:
    package_id: str
    sticker_id: str


@dataclass(frozen=True, slots=True)
class VideoMessage:
    original_content_uri: str
    preview_image_uri: str
    tracking_id: str = ""


@dataclass(frozen=True, slots=True)
class AudioMessage:
    original_content_uri: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ChannelNativeMessage:
    """A message in the channel's own format: `payload` is a JSON object's text. `preview` is
    what the channel's plugin made of it when the draft was saved (see `preview`)."""

    payload: str
    preview: str = ""

    @classmethod
    def of(cls, data: dict[str, Any], preview: str = "") -> ChannelNativeMessage:
        return cls(json.dumps(data, ensure_ascii=False, separators=(",", ":")), preview)

    def data(self) -> dict[str, Any]:
        value = json.loads(self.payload)
        return value if isinstance(value, dict) else {}


Message = (
    TextMessage | ImageMessage | StickerMessage | VideoMessage | AudioMessage | ChannelNativeMessage
)

_KINDS: dict[type, str] = {
    TextMessage: TEXT,
    ImageMessage: IMAGE,
    StickerMessage: STICKER,
    VideoMessage: VIDEO,
    AudioMessage: AUDIO,
    ChannelNativeMessage: CHANNEL_NATIVE,
}
_LABELS = {IMAGE: "[Image]", STICKER: "[Sticker]", VIDEO: "[Video]", AUDIO: "[Audio]"}


def kind_of(message: Message) -> str:
    """The kind name of a bubble, as channels declare it."""
    return _KINDS[type(message)]


def shorten(text: str, limit: int = PREVIEW_TEXT_LENGTH) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters with `…`."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def preview(message: Message) -> str:
    """The bubble as plain text, for lists and the Message Center: the text shortened,
    a label for media, and for a channel-native bubble what its plugin made of it."""
    if isinstance(message, TextMessage):
        return shorten(message.text)
    if isinstance(message, ChannelNativeMessage):
        return message.preview or "[Message]"
    return _LABELS[kind_of(message)]


class ChannelCheck(enum.Enum):
    """How a channel's own check of a draft's messages went (see Channel.check_messages)."""

    NOT_CHECKED = "not_checked"  # the channel has no check of its own
    ACCEPTED = "accepted"
    UNAVAILABLE = "unavailable"  # the channel could not answer: the local rules only
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: ChannelCheck
    detail: str = ""  # for people: what was refused, or why it could not be asked
