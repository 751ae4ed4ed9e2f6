"""Bubble kinds in the core: what a channel does not declare is refused before its plugin sees
it, and every kind (with a silent send's option) is stored and read back as given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Broadcast, BroadcastState
from broadcaster.domain.errors import InvalidArgument
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
from broadcaster.domain.reasons import Reason
from broadcaster.services.broadcasts import Broadcasts, DraftInput
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.store import broadcasts as repo
from tests.fakechannel import FakeChannel

EVERY_KIND: tuple[Message, ...] = (
    TextMessage("Hi $ and $", (TextEmoji(3, "5ac1bfd5040ab15980c9b435", "001"),)),
    ImageMessage("https://cdn.example.com/a.png", "https://cdn.example.com/a-small.png"),
    StickerMessage("446", "1988"),
    VideoMessage("https://cdn.example.com/v.mp4", "https://cdn.example.com/v.png", "sale-1"),
    AudioMessage("https://cdn.example.com/a.m4a", 61_000),
    ChannelNativeMessage.of(
        {"type": "flex", "altText": "Winter sale", "contents": {"type": "bubble"}},
        "[Card] Winter sale",
    ),
)


def test_the_test_channel_declares_only_text() -> None:
    assert [k.kind for k in FakeChannel.capabilities.message_kinds] == ["text"]


async def _fake_channel(ctx: ServiceContext, hub: ChannelHub, merchant: str) -> str:
    made = await Channels(ctx, hub).create(
        LOCAL, f"merchants/{merchant}", "fake", {"token": "t", "account": merchant}, ""
    )
    return f"merchants/{merchant}/channels/{made.id}"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (StickerMessage("446", "1988"), "broadcast.messages[1].sticker"),
        (
            ImageMessage("https://x.example/a.png", "https://x.example/b.png"),
            "broadcast.messages[1].image",
        ),
        (
            VideoMessage("https://x.example/a.mp4", "https://x.example/b.png"),
            "broadcast.messages[1].video",
        ),
        (AudioMessage("https://x.example/a.m4a", 1000), "broadcast.messages[1].audio"),
        (ChannelNativeMessage.of({"type": "flex"}), "broadcast.messages[1].channel_native"),
        (TextMessage("$", (TextEmoji(0, "p", "e"),)), "broadcast.messages[1].text.emojis"),
    ],
)
async def test_a_kind_the_channel_does_not_declare_is_refused_with_a_reason(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, message: Message, field: str
) -> None:
    channel = await _fake_channel(ctx, hub, merchant)
    draft = DraftInput(
        "Sale", channel, InteractionWindow.LAST_7_DAYS, (), (TextMessage("hi"), message)
    )

    with pytest.raises(InvalidArgument) as e:
        await Broadcasts(ctx, hub).create(LOCAL, f"merchants/{merchant}", draft, "")

    [violation] = e.value.violations
    assert e.value.reason == Reason.INVALID_ARGUMENT
    assert violation.field == field
    assert violation.reason == Reason.MESSAGE_KIND_UNSUPPORTED
    assert "do not take" in violation.description


async def test_the_silent_option_is_kept_edited_and_copied(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    channel = await _fake_channel(ctx, hub, merchant)
    service = Broadcasts(ctx, hub)
    parent = f"merchants/{merchant}"
    draft = DraftInput(
        "Quiet", channel, InteractionWindow.LAST_7_DAYS, (), (TextMessage("hi"),), True
    )
    made = await service.create(LOCAL, parent, draft, "")
    name = f"{parent}/broadcasts/{made.id}"
    assert made.notification_disabled
    assert made.previews == ("hi",)

    copied = await service.copy(LOCAL, name, "")
    assert copied.notification_disabled

    loud = DraftInput("Quiet", channel, None, (), (), False)
    edited = await service.update(LOCAL, name, ["notification_disabled"], loud)
    assert not edited.notification_disabled
    assert edited.messages == (TextMessage("hi"),)


async def test_every_kind_is_stored_and_read_back_as_given(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    channel = (await _fake_channel(ctx, hub, merchant)).rsplit("/", 1)[1]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    b = Broadcast(
        merchant,
        "b" * 26,
        "Every kind",
        channel,
        Audience(InteractionWindow.LAST_7_DAYS, None),
        EVERY_KIND,
        BroadcastState.DRAFT,
        "",
        now,
        now,
        notification_disabled=True,
    )

    stored = await ctx.db.write(lambda conn: repo.create(conn, b))
    read = await ctx.db.read_point(repo.get, merchant, b.id)

    assert stored.messages == read.messages == EVERY_KIND
    assert read.notification_disabled
    assert read.previews == (
        "Hi $ and $",
        "[Image]",
        "[Sticker]",
        "[Video]",
        "[Audio]",
        "[Card] Winter sale",
    )
