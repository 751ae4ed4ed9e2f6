"""Between protobuf messages and domain values (channels, contacts, groups).

Enums map through explicit tables, so a domain value need not equal its protobuf number.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.api.timestamps import timestamp
from broadcaster.channels import Capabilities, Quota
from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.health import MESSAGES, Issue, WebhookState, issues_of
from broadcaster.domain.model import (
    AccountTier,
    ChannelAccount,
    ChannelState,
    Contact,
    ContactSyncRun,
    CredentialState,
    CustomerGroup,
    FollowerState,
    SyncState,
)
from broadcaster.domain.names import ChannelName, ContactName, CustomerGroupName
from broadcaster.v1 import channel_service_pb2 as channel_pb
from broadcaster.v1 import contact_service_pb2 as contact_pb
from broadcaster.v1 import customer_group_service_pb2 as group_pb

FOLLOWER_STATES_OUT: dict[FollowerState, contact_pb.Contact.FollowerState.ValueType] = {
    FollowerState.UNKNOWN: contact_pb.Contact.FOLLOWER_STATE_UNSPECIFIED,
    FollowerState.FOLLOWING: contact_pb.Contact.FOLLOWING,
    FollowerState.BLOCKED: contact_pb.Contact.BLOCKED,
}
_FOLLOWER_STATES_IN = {int(n): s for s, n in FOLLOWER_STATES_OUT.items()}

SYNC_STATES_OUT: dict[SyncState, channel_pb.ContactSync.State.ValueType] = {
    SyncState.RUNNING: channel_pb.ContactSync.RUNNING,
    SyncState.SUCCEEDED: channel_pb.ContactSync.SUCCEEDED,
    SyncState.FAILED: channel_pb.ContactSync.FAILED,
    SyncState.SKIPPED: channel_pb.ContactSync.SKIPPED,
}

TIERS_OUT: dict[AccountTier, channel_pb.Channel.Tier.ValueType] = {
    AccountTier.STANDARD: channel_pb.Channel.STANDARD,
    AccountTier.VERIFIED: channel_pb.Channel.VERIFIED,
    AccountTier.PREMIUM: channel_pb.Channel.PREMIUM,
}

CHANNEL_STATES_OUT: dict[ChannelState, channel_pb.Channel.State.ValueType] = {
    ChannelState.CONNECTED: channel_pb.Channel.CONNECTED,
    ChannelState.CREDENTIALS_INVALID: channel_pb.Channel.CREDENTIALS_INVALID,
}

CREDENTIAL_STATES_OUT: dict[CredentialState, channel_pb.Channel.CredentialState.ValueType] = {
    CredentialState.VALID: channel_pb.Channel.CREDENTIAL_VALID,
    CredentialState.EXPIRING: channel_pb.Channel.CREDENTIAL_EXPIRING,
    CredentialState.REFUSED: channel_pb.Channel.CREDENTIAL_REFUSED,
}


def follower_state(value: int, field: str) -> FollowerState:
    found = _FOLLOWER_STATES_IN.get(value)
    if found is None:
        raise InvalidArgument([FieldViolation(field, f"unknown follower state {value}")])
    return found


def customer_group(g: CustomerGroup) -> group_pb.CustomerGroup:
    return group_pb.CustomerGroup(
        name=str(CustomerGroupName(g.merchant, g.id)),
        display_name=g.display_name,
        description=g.description,
        member_count=g.member_count,
        create_time=timestamp(g.create_time),
        update_time=timestamp(g.update_time),
    )


def contact(c: Contact) -> contact_pb.Contact:
    out = contact_pb.Contact(
        name=str(ContactName(c.merchant, c.channel, c.id)),
        external_id=c.external_id,
        display_name=c.display_name,
        picture_uri=c.picture_uri,
        follower_state=FOLLOWER_STATES_OUT[c.follower_state],
        opted_out=c.opted_out,
        customer_id=c.customer_id or "",
        has_conversation=c.has_conversation,
        observe_time=timestamp(c.observe_time),
        create_time=timestamp(c.create_time),
        update_time=timestamp(c.update_time),
    )
    if c.last_interaction_time is not None:
        out.last_interaction_time.CopyFrom(timestamp(c.last_interaction_time))
    return out


def contact_sync(run: ContactSyncRun) -> channel_pb.ContactSync:
    out = channel_pb.ContactSync(
        state=SYNC_STATES_OUT[run.state],
        contacts_synced=run.contacts_synced,
        profiles_fetched=run.profiles_fetched,
        contacts_created=run.contacts_created,
        contacts_unfollowed=run.contacts_unfollowed,
        start_time=timestamp(run.start_time),
        error_reason=run.error_reason,
        message=run.message,
        followers_complete=run.phase >= 2,
    )
    if run.end_time is not None:
        out.end_time.CopyFrom(timestamp(run.end_time))
    return out


def capabilities(c: Capabilities) -> channel_pb.ChannelCapabilities:
    return channel_pb.ChannelCapabilities(
        max_recipients_per_request=c.max_recipients_per_request,
        requests_per_second=c.requests_per_second,
        max_messages=c.max_messages,
        message_kinds=[
            channel_pb.MessageKindLimits(kind=k.kind, limits=dict(k.limits))
            for k in c.message_kinds
        ],
    )


def channel(
    a: ChannelAccount, caps: Capabilities | None, now: datetime | None = None
) -> channel_pb.Channel:
    """`now`: when the credential's state is judged (default: the current time)."""
    issued = a.issued_credential
    out = channel_pb.Channel(
        name=str(ChannelName(a.merchant, a.id)),
        type=a.type,
        display_name=a.display_name,
        account_id=a.account_id,
        handle=a.handle,
        picture_uri=a.picture_uri,
        tier=TIERS_OUT[a.tier],
        state=CHANNEL_STATES_OUT[a.state],
        webhook_path=a.webhook_path,
        create_time=timestamp(a.create_time),
        update_time=timestamp(a.update_time),
        credential_state=CREDENTIAL_STATES_OUT[a.credential_state(now or datetime.now(UTC))],
        credential_kind=(
            channel_pb.Channel.LONG_LIVED if issued is None else channel_pb.Channel.SHORT_LIVED
        ),
    )
    if issued is not None:
        out.credential_expire_time.CopyFrom(timestamp(issued.expire_time))
        out.credential_renew_time.CopyFrom(timestamp(issued.renew_time))
        out.credential_issue_time.CopyFrom(timestamp(issued.issue_time))
    if caps is not None:
        out.capabilities.CopyFrom(capabilities(caps))
    if a.last_sync is not None:
        out.last_sync.CopyFrom(contact_sync(a.last_sync))
    upkeep_into(out, a)
    return out


WEBHOOK_STATES_OUT: dict[WebhookState, channel_pb.WebhookStatus.State.ValueType] = {
    WebhookState.UNKNOWN: channel_pb.WebhookStatus.STATE_UNSPECIFIED,
    WebhookState.MANUAL: channel_pb.WebhookStatus.MANUAL,
    WebhookState.SET: channel_pb.WebhookStatus.SET,
    WebhookState.VERIFIED: channel_pb.WebhookStatus.VERIFIED,
    WebhookState.FAILING: channel_pb.WebhookStatus.FAILING,
}
ISSUES_OUT: dict[Issue, channel_pb.ChannelIssue.Kind.ValueType] = {
    Issue.CREDENTIALS_REFUSED: channel_pb.ChannelIssue.CREDENTIALS_REFUSED,
    Issue.WEBHOOK_FAILING: channel_pb.ChannelIssue.WEBHOOK_FAILING,
    Issue.FOLLOWER_SYNC_FAILED: channel_pb.ChannelIssue.FOLLOWER_SYNC_FAILED,
    Issue.FOLLOWERS_STALE: channel_pb.ChannelIssue.FOLLOWERS_STALE,
    Issue.QUOTA_EXHAUSTED: channel_pb.ChannelIssue.QUOTA_EXHAUSTED,
    Issue.CREDENTIALS_EXPIRING: channel_pb.ChannelIssue.CREDENTIALS_EXPIRING,
}


def _ts(value: datetime | None) -> Timestamp | None:
    return None if value is None else timestamp(value)


def upkeep_into(out: channel_pb.Channel, a: ChannelAccount) -> None:
    """The channel's webhook, follower list, quota and health, as last stored."""
    u = a.upkeep
    out.webhook.CopyFrom(
        channel_pb.WebhookStatus(
            state=WEBHOOK_STATES_OUT[u.webhook_state],
            endpoint=u.webhook_endpoint,
            detail=u.webhook_detail,
            test_time=_ts(u.webhook_test_time),
            last_event_time=_ts(u.last_event_time),
        )
    )
    listable = a.last_sync is None or a.last_sync.state != SyncState.SKIPPED
    out.follower_sync.CopyFrom(
        channel_pb.FollowerSyncStatus(
            # As of the last assessment (kept current by the upkeep loop).
            complete=listable
            and u.followers_sync_time is not None
            and Issue.FOLLOWERS_STALE not in u.issues,
            sync_time=_ts(u.followers_sync_time),
            next_sync_time=_ts(u.next_sync_time),
        )
    )
    if u.quota_time is not None and u.quota_used is not None:
        out.quota.CopyFrom(
            quota(
                ChannelName(a.merchant, a.id),
                Quota(limited=u.quota_limit is not None, limit=u.quota_limit, used=u.quota_used),
            )
        )
        out.quota_time.CopyFrom(timestamp(u.quota_time))
    out.health.CopyFrom(
        channel_pb.ChannelHealth(
            needs_attention=bool(u.issues),
            issues=[
                channel_pb.ChannelIssue(kind=ISSUES_OUT[i], message=MESSAGES[i])
                for i in issues_of(u.issues)
            ],
            since=_ts(u.unhealthy_since),
        )
    )


def quota(name: ChannelName, q: Quota) -> channel_pb.ChannelQuota:
    return channel_pb.ChannelQuota(
        name=f"{name}/quota",
        limited=q.limited,
        limit=q.limit or 0,
        used=q.used,
        remaining=q.remaining or 0,
    )
