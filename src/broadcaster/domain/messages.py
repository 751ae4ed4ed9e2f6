"""The bubbles of a broadcast: text or image. Channel plugins decide their limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextMessage:
    text: str


@dataclass(frozen=True, slots=True)
class ImageMessage:
    original_content_url: str
    preview_image_url: str


Message = TextMessage | ImageMessage
