"""A channel's health from its inputs: each check yields its issue exactly when its input says
so, and the issues found are the union of the checks'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.health import (
    MESSAGES,
    HealthInputs,
    Issue,
    Upkeep,
    WebhookState,
    assess,
    followers_complete,
    issues_of,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
STALE = 2 * DAY


def _inputs(**changes: object) -> HealthInputs:
    upkeep = changes.pop("upkeep", Upkeep(followers_sync_time=NOW - DAY))
    base: dict[str, object] = {
        "credentials_refused": False,
        "upkeep": upkeep,
        "sync_failed": False,
        "followers_listable": True,
        "create_time": NOW - 30 * DAY,
        "now": NOW,
        "stale_after": STALE,
    }
    base.update(changes)
    return HealthInputs(**base)  # type: ignore[arg-type]


def test_a_channel_with_nothing_wrong_is_healthy() -> None:
    assert assess(_inputs()) == Issue(0)


def test_every_issue_has_a_message() -> None:
    assert set(MESSAGES) == set(Issue)


@given(
    refused=st.booleans(),
    webhook=st.sampled_from(list(WebhookState)),
    failed=st.booleans(),
    listable=st.booleans(),
    read_ago=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=10 * DAY)),
    created_ago=st.timedeltas(min_value=timedelta(0), max_value=10 * DAY),
    limit=st.one_of(st.none(), st.integers(0, 1000)),
    used=st.integers(0, 1000),
    expiring=st.booleans(),
)
def test_each_issue_follows_its_input(
    refused: bool,
    webhook: WebhookState,
    failed: bool,
    listable: bool,
    read_ago: timedelta | None,
    created_ago: timedelta,
    limit: int | None,
    used: int,
    expiring: bool,
) -> None:
    read = None if read_ago is None else NOW - read_ago
    upkeep = Upkeep(
        followers_sync_time=read, webhook_state=webhook, quota_limit=limit, quota_used=used
    )
    found = assess(
        _inputs(
            credentials_refused=refused,
            upkeep=upkeep,
            sync_failed=failed,
            followers_listable=listable,
            create_time=NOW - created_ago,
            credentials_expiring=expiring,
        )
    )
    assert (Issue.CREDENTIALS_REFUSED in found) == refused
    # Refused says more than expiring: one credential issue at a time.
    assert (Issue.CREDENTIALS_EXPIRING in found) == (expiring and not refused)
    assert (Issue.WEBHOOK_FAILING in found) == (webhook == WebhookState.FAILING)
    assert (Issue.FOLLOWER_SYNC_FAILED in found) == failed
    age = read_ago if read_ago is not None else created_ago
    assert (Issue.FOLLOWERS_STALE in found) == (listable and age > STALE)
    assert (Issue.QUOTA_EXHAUSTED in found) == (limit is not None and used >= limit)
    # Complete and stale never hold together for a list the account may read.
    complete = followers_complete(listable, read, NOW, STALE)
    assert not (complete and Issue.FOLLOWERS_STALE in found)
    assert complete == (
        listable and read is not None and read_ago is not None and read_ago <= STALE
    )
    assert issues_of(found) == [i for i in Issue if i in found]


def test_a_manual_or_unverified_webhook_is_not_an_issue() -> None:
    for state in (WebhookState.UNKNOWN, WebhookState.MANUAL, WebhookState.SET):
        upkeep = Upkeep(followers_sync_time=NOW - DAY, webhook_state=state)
        assert assess(_inputs(upkeep=upkeep)) == Issue(0)
