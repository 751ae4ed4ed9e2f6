"""The channel's own check of a draft's messages: its verdict, and never an error when the
channel cannot answer (an outage must not block editing)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from broadcaster.channels import ChannelUnavailable, CredentialsInvalid, FieldViolation
from broadcaster.domain.messages import ChannelCheck, Message, TextMessage
from broadcaster.services import broadcasts
from broadcaster.services.broadcasts import channel_check

MESSAGES: tuple[Message, ...] = (TextMessage("hi"),)


class Checking:
    """A channel whose check answers `answer` (or raises it) after `delay` seconds."""

    def __init__(self, answer: Any, delay: float = 0.0) -> None:
        self._answer, self._delay = answer, delay

    async def check_messages(self, messages: Sequence[Message]) -> Any:
        await asyncio.sleep(self._delay)
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


async def _check(answer: Any, delay: float = 0.0) -> Any:
    return await channel_check(Checking(answer, delay), MESSAGES)  # type: ignore[arg-type]


async def test_a_channel_without_a_check_of_its_own_is_not_checked() -> None:
    result, refused = await _check(None)
    assert (result.check, result.detail, refused) == (ChannelCheck.NOT_CHECKED, "", [])


async def test_accepted_and_refused_messages() -> None:
    accepted, _ = await _check([])
    problem = FieldViolation("messages[0].text", "LINE refuses it: too long")
    refused, violations = await _check([problem])

    assert accepted.check is ChannelCheck.ACCEPTED
    assert refused.check is ChannelCheck.REFUSED
    assert refused.detail == "messages[0].text: LINE refuses it: too long"
    assert violations == [problem]


@pytest.mark.parametrize(
    "error", [ChannelUnavailable("LINE answered 503"), CredentialsInvalid("401")]
)
async def test_a_channel_that_cannot_answer_is_unavailable_not_an_error(error: Exception) -> None:
    result, refused = await _check(error)
    assert (result.check, refused) == (ChannelCheck.UNAVAILABLE, [])
    assert str(error) in result.detail


async def test_a_channel_too_slow_to_answer_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broadcasts, "CHANNEL_CHECK_SECONDS", 0.05)
    result, refused = await _check([], delay=1.0)
    assert (result.check, refused) == (ChannelCheck.UNAVAILABLE, [])
    assert "did not answer within 0.05 s" in result.detail
