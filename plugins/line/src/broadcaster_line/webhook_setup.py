"""Setting a channel's webhook URL through LINE and verifying it.

`PUT /v2/bot/channel/webhook/endpoint` sets the URL (an HTTPS URL of at most 500 characters);
`POST /v2/bot/channel/webhook/test` has LINE post a signed webhook with no events to it and
answers `success`, `statusCode`, `reason` and `detail`. A URL LINE refuses (400) and a test
that did not succeed are outcomes for the merchant, not errors.
"""

from __future__ import annotations

from typing import Any

from broadcaster.channels import WebhookSetup
from broadcaster_line.client import LineClient, LineReply, failure
from broadcaster_line.retry import DEFAULT_RETRY, RetryPolicy, call_with_retries


def _test_detail(body: Any) -> str:
    if not isinstance(body, dict):
        return "LINE's webhook test gave no result"
    status, reason, detail = body.get("statusCode"), body.get("reason"), body.get("detail")
    parts = [f"statusCode {status}" if isinstance(status, int) else ""]
    parts += [str(v) for v in (reason, detail) if isinstance(v, str) and v and v != str(status)]
    return "LINE's webhook test failed: " + ": ".join(p for p in parts if p)


async def set_webhook(
    client: LineClient, url: str, retry: RetryPolicy = DEFAULT_RETRY
) -> WebhookSetup:
    async def put() -> LineReply:
        return await client.set_webhook_endpoint(url)

    async def test() -> LineReply:
        return await client.test_webhook_endpoint(url)

    reply = await call_with_retries(put, "setting the webhook URL", retry)
    if reply.status == 400:
        return WebhookSetup(
            False, False, "", f"LINE refused the webhook URL: {reply.error.describe()}"
        )
    if not reply.ok:
        raise failure(reply, "setting the webhook URL")
    tested = await call_with_retries(test, "testing the webhook URL", retry)
    if not tested.ok:
        if tested.status == 400:
            return WebhookSetup(
                True, False, url, f"LINE could not test the webhook URL: {tested.error.describe()}"
            )
        raise failure(tested, "testing the webhook URL")
    body = tested.body
    if isinstance(body, dict) and body.get("success") is True:
        return WebhookSetup(True, True, url)
    return WebhookSetup(True, False, url, _test_detail(body))
