"""The `broadcasts.messages` column: a broadcast's bubbles as JSON, one object per bubble keyed
by its kind: `{"text": "...", "emojis": [[index, product, emoji]]}`, `{"image": [original,
preview]}`, `{"sticker": [package, sticker]}`, `{"video": [original, preview, tracking]}`,
`{"audio": [original, duration_ms]}`, `{"native": "<JSON text>", "preview": "..."}`."""

from __future__ import annotations

import functools
import json
from typing import Any

from broadcaster.domain.messages import (
    AudioMessage,
    ChannelNativeMessage,
    ImageMessage,
    Message,
    StickerMessage,
    TextEmoji,
    TextMessage,
    VideoMessage,
)


def _encode_message(m: Message) -> dict[str, Any]:
    match m:
        case TextMessage(text, emojis):
            out: dict[str, Any] = {"text": text}
            if emojis:
                out["emojis"] = [[e.index, e.product_id, e.emoji_id] for e in emojis]
            return out
        case ImageMessage(original, preview):
            return {"image": [original, preview]}
        case StickerMessage(package, sticker):
            return {"sticker": [package, sticker]}
        case VideoMessage(original, preview, tracking):
            return {"video": [original, preview, tracking]}
        case AudioMessage(original, duration):
            return {"audio": [original, duration]}
        case ChannelNativeMessage(payload, preview):
            return {"native": payload, "preview": preview}
    raise TypeError(f"cannot store {type(m).__name__}")


def _decode_message(m: dict[str, Any]) -> Message:
    if "text" in m:
        emojis = tuple(TextEmoji(*e) for e in m.get("emojis", ()))
        return TextMessage(m["text"], emojis)
    if "image" in m:
        return ImageMessage(*m["image"])
    if "sticker" in m:
        return StickerMessage(*m["sticker"])
    if "video" in m:
        return VideoMessage(*m["video"])
    if "audio" in m:
        return AudioMessage(*m["audio"])
    return ChannelNativeMessage(m["native"], m.get("preview", ""))


def encode_messages(messages: tuple[Message, ...]) -> str:
    """The messages column: a JSON list, one object per bubble keyed by its kind."""
    return json.dumps([_encode_message(m) for m in messages], ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def decode_messages(raw: str) -> tuple[Message, ...]:
    """Cached: list pages decode the same bubbles again and again (the values are frozen)."""
    return tuple(_decode_message(m) for m in json.loads(raw))
