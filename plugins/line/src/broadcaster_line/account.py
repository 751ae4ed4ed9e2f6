"""The LINE Official Account behind a channel: who it is, its tier, what it may target, and its
monthly message quota.

LINE's API has no "verified" or "premium" field. A premium account has a `premiumId` in its bot
info; otherwise the tier shows in what the account may do: only verified (and premium) accounts
may read their follower list, so a one-id probe of it answers 200 for a verified account and 403
for a standard one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from broadcaster.channels import (
    AccountInfo,
    AccountTier,
    Audience,
    ChannelUnavailable,
    Eligibility,
    InteractionWindow,
    Quota,
    Reason,
)
from broadcaster_line.client import LineClient, LineReply, failure
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy, call_with_retries

ALL_CONTACTS_NOT_ELIGIBLE = (
    'The "All LINE contacts" audience needs a verified or premium LINE Official Account: LINE '
    "lets only those read their follower list, so this account's contacts who never interacted "
    "with it are unknown. Choose a last-interaction window instead (for example the last 30 "
    "or 365 days), or get the account verified by LINE and sync its contacts."
)


def _field(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


async def connect(client: LineClient, retry: RetryPolicy = DEFAULT_RETRY) -> AccountInfo:
    """Verify the token and describe the account. Raises CredentialsInvalid (401, 403),
    ChannelUnavailable (network trouble, 5xx that outlasts the retries, any other answer)."""
    info = await call_with_retries(client.bot_info, "verifying the channel", retry)
    if not info.ok:
        raise failure(info, "verifying the channel")
    body = info.body
    user_id = _field(body, "userId")
    if not user_id:
        raise ChannelUnavailable("LINE's bot info had no userId")
    return AccountInfo(
        account_id=user_id,
        display_name=_field(body, "displayName"),
        tier=await _tier(client, body, retry),
        picture_uri=_field(body, "pictureUrl"),
        handle=_field(body, "basicId"),
    )


async def _tier(client: LineClient, bot_info: Any, retry: RetryPolicy) -> AccountTier:
    if _field(bot_info, "premiumId"):
        return AccountTier.PREMIUM

    async def probe() -> LineReply:
        return await client.followers_ids(limit=1)

    reply = await call_with_retries(probe, "checking the account type", retry)
    if reply.ok:
        return AccountTier.VERIFIED
    if reply.status == 403:
        return AccountTier.STANDARD
    raise failure(reply, "checking the account type")


def check_eligibility(audience: Audience, account: AccountInfo) -> Eligibility:
    if audience.window is InteractionWindow.ALL_CONTACTS and account.tier == AccountTier.STANDARD:
        return Eligibility(False, Reason.AUDIENCE_NOT_ELIGIBLE, ALL_CONTACTS_NOT_ELIGIBLE)
    return Eligibility(True)


async def read_quota(client: LineClient, retry: RetryPolicy = DEFAULT_RETRY) -> Quota:
    """This month's target limit (if the account set one) and the messages counted so far."""
    limit, usage = await asyncio.gather(
        call_with_retries(client.quota, "reading the message quota", retry),
        call_with_retries(client.quota_consumption, "reading the message quota", retry),
    )
    for reply in (limit, usage):
        if not reply.ok:
            raise failure(reply, "reading the message quota")
    limited = isinstance(limit.body, dict) and limit.body.get("type") == "limited"
    value = limit.body.get("value") if limited else None
    used = usage.body.get("totalUsage") if isinstance(usage.body, dict) else None
    return Quota(
        limited=limited,
        limit=value if isinstance(value, int) and limited else None,
        used=used if isinstance(used, int) else 0,
    )
