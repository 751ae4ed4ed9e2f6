"""The metrics module: names, labels, the typed API, the broadcasts-by-state collector."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.channels import InteractionEvent, InteractionKind, SendOutcome, SendStatus
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.metrics import LAG_TICK, BroadcastStates, Metrics

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def _value(m: Metrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_each_app_has_its_own_registry() -> None:
    # Two sets in one process (two apps in one test run) neither clash nor share counts.
    a, b = Metrics(), Metrics()
    a.webhook_signature_failure("fake")
    assert _value(a, "broadcaster_webhook_signature_failures_total", channel_type="fake") == 1
    assert _value(b, "broadcaster_webhook_signature_failures_total", channel_type="fake") == 0


def test_rpcs_by_service_method_and_code() -> None:
    m = Metrics(process=False)
    for code in ("OK", "OK", "NOT_FOUND"):
        m.rpc("/broadcaster.v1.BroadcastService/GetBroadcast", code, 0.002)
    m.rpc("/broadcaster.v1.EventService/WatchEvents", "CANCELLED", None)
    labels = {"service": "broadcaster.v1.BroadcastService", "method": "GetBroadcast"}
    assert _value(m, "broadcaster_rpcs_total", code="OK", **labels) == 2
    assert _value(m, "broadcaster_rpcs_total", code="NOT_FOUND", **labels) == 1
    assert _value(m, "broadcaster_rpc_duration_seconds_count", **labels) == 3
    assert _value(m, "broadcaster_rpc_duration_seconds_sum", **labels) == 0.006
    stream = {"service": "broadcaster.v1.EventService", "method": "WatchEvents"}
    assert _value(m, "broadcaster_rpcs_total", code="CANCELLED", **stream) == 1
    assert _value(m, "broadcaster_rpc_duration_seconds_count", **stream) == 0  # streams: no time


def test_batches_recipients_and_rate_limiter_waits() -> None:
    m = Metrics(process=False)
    m.record_batch("line", SendOutcome(SendStatus.ACCEPTED), 0.05, recipients_sent=500)
    m.record_batch("line", SendOutcome(SendStatus.RETRY_LATER, rate_limited=True), 0.01)
    m.record_batch("line", SendOutcome(SendStatus.RETRY_LATER), 2.0)
    m.record_batch("line", SendStatus.INVALID_RECIPIENTS, 0.04, recipients_failed=2)
    m.record_batch("line", "error", 30.0)
    m.recipients("line", failed=10)
    m.rate_limit_wait("line", 0.0)
    m.rate_limit_wait("line", 0.5)

    def responses(outcome: str) -> float:
        return _value(
            m, "broadcaster_channel_responses_total", channel_type="line", outcome=outcome
        )

    assert [
        responses(o)
        for o in ("accepted", "rate_limited", "retry_later", "invalid_recipients", "error")
    ] == [1, 1, 1, 1, 1]
    assert _value(m, "broadcaster_recipients_sent_total", channel_type="line") == 500
    assert _value(m, "broadcaster_recipients_failed_total", channel_type="line") == 12
    latency = {"channel_type": "line", "outcome": "accepted"}
    assert _value(m, "broadcaster_batch_send_duration_seconds_bucket", le="0.05", **latency) == 1
    assert _value(m, "broadcaster_rate_limit_wait_seconds_count", channel_type="line") == 2
    assert _value(m, "broadcaster_rate_limit_wait_seconds_sum", channel_type="line") == 0.5


def test_webhooks_and_contact_sync() -> None:
    m = Metrics(process=False)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    kinds = [InteractionKind.FOLLOW, InteractionKind.MESSAGE, InteractionKind.MESSAGE]
    m.webhook_received("fake", [InteractionEvent(str(i), "u", k, at) for i, k in enumerate(kinds)])
    m.webhook_request("fake", 200)
    m.webhook_request("unknown", 404)
    assert _value(m, "broadcaster_webhook_events_total", channel_type="fake", kind="message") == 2
    assert _value(m, "broadcaster_webhook_events_total", channel_type="fake", kind="follow") == 1
    assert _value(m, "broadcaster_webhook_requests_total", channel_type="unknown", status="404")

    with m.sync_running():
        assert _value(m, "broadcaster_contact_syncs_running") == 1
        m.sync_progress("fake", contacts=5000)
        m.sync_progress("fake", profiles=500)
    m.sync_finished("fake", "succeeded")
    assert _value(m, "broadcaster_contact_syncs_running") == 0
    assert _value(m, "broadcaster_contacts_synced_total", channel_type="fake") == 5000
    assert _value(m, "broadcaster_contact_profiles_fetched_total", channel_type="fake") == 500
    finished = {"channel_type": "fake", "state": "succeeded"}
    assert _value(m, "broadcaster_contact_syncs_finished_total", **finished) == 1


def test_broadcasts_by_state_are_counted_at_each_scrape() -> None:
    m = Metrics(process=False)
    counts = {int(BroadcastState.DRAFT): 3}
    calls = []

    def count() -> dict[int, int]:
        calls.append(1)
        return counts

    m.registry.register(BroadcastStates(count))
    assert calls == []  # registering never queries
    assert _value(m, "broadcaster_broadcasts", state="draft") == 3
    assert _value(m, "broadcaster_broadcasts", state="sending") == 0  # every state, zeros too
    counts[int(BroadcastState.SENT)] = 2
    assert _value(m, "broadcaster_broadcasts", state="sent") == 2
    assert len(calls) == 3  # one query per scrape


def test_a_failing_count_leaves_the_rest_of_the_scrape_intact() -> None:
    m = Metrics(process=False)

    def count() -> dict[int, int]:
        raise ConnectionError("database down")

    m.registry.register(BroadcastStates(count))
    m.webhook_request("fake", 200)
    names = {f.name for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    assert "broadcaster_webhook_requests" in names
    assert "broadcaster_broadcasts" not in names


def test_every_metric_is_documented() -> None:
    m = Metrics(process=False)
    m.registry.register(BroadcastStates(dict))
    for family in m.registry.collect():
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{shown}`" in DOC, f"{shown} is not in docs/operations.md"


async def test_the_event_loop_ticker_records_a_blocked_loop() -> None:
    import asyncio
    import time

    m = Metrics(process=False)
    watch = m.watch_event_loop()
    await asyncio.sleep(LAG_TICK * 1.5)  # a tick
    # Blocks the loop on purpose: the next tick is at least 80 ms late.
    time.sleep(LAG_TICK + 0.08)  # noqa: ASYNC251
    await asyncio.sleep(LAG_TICK * 1.5)
    watch.cancel()
    assert _value(m, "broadcaster_event_loop_lag_seconds_count") >= 2
    assert _value(m, "broadcaster_event_loop_lag_max_seconds") >= 0.07
    assert _value(m, "broadcaster_event_loop_lag_seconds_bucket", le="0.05") < _value(
        m, "broadcaster_event_loop_lag_seconds_count"
    )


def test_a_channel_turning_unhealthy_counts_each_issue_once() -> None:
    from broadcaster.domain.health import Issue

    m = Metrics(process=False)
    m.health_changed("line", 0, int(Issue.WEBHOOK_FAILING | Issue.QUOTA_EXHAUSTED))
    # Already unhealthy: a new issue is an issue opened, not another channel turning.
    m.health_changed("line", int(Issue.WEBHOOK_FAILING), int(Issue.WEBHOOK_FAILING | 1))
    m.health_changed("line", int(Issue.WEBHOOK_FAILING), 0)  # recovering counts nothing
    turned = "broadcaster_channels_turned_unhealthy_total"
    opened = "broadcaster_channel_issues_opened_total"
    assert _value(m, turned, channel_type="line", issue="webhook_failing") == 1
    assert _value(m, turned, channel_type="line", issue="quota_exhausted") == 1
    assert _value(m, turned, channel_type="line", issue="credentials_refused") == 0
    assert _value(m, opened, channel_type="line", issue="credentials_refused") == 1
    assert _value(m, opened, channel_type="line", issue="webhook_failing") == 1
