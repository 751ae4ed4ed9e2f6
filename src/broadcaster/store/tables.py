"""The database schema as SQLModel tables. Times are integer microseconds since the epoch (UTC).

Integer times compare and index the same way on SQLite and PostgreSQL, which keeps the
audience and snapshot queries portable and fast.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from broadcaster.store.batch_recipients import IS_OPEN


def _time(nullable: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable)


def _table(row: type[SQLModel]) -> Table:
    """The Core table of a row class, for set-based statements (SQLModel does not type
    `__table__`)."""
    return SQLModel.metadata.tables[str(row.__tablename__)]


class CustomerGroupRow(SQLModel, table=True):
    __tablename__ = "customer_groups"
    __table_args__ = (Index("ix_customer_groups_merchant_id", "merchant_id", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=64)
    display_name: str = Field(max_length=256)
    # casefold()ed display name: case-insensitive search that also holds for non-ASCII text.
    display_name_folded: str = Field(max_length=1024)
    description: str = Field(default="", max_length=1024)
    member_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    create_time: int = Field(sa_column=_time())
    update_time: int = Field(sa_column=_time())


class CustomerGroupMemberRow(SQLModel, table=True):
    __tablename__ = "customer_group_members"
    __table_args__ = (Index("ix_customer_group_members_customer", "customer_id", "group_id"),)

    group_id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(primary_key=True, max_length=128)


class ContactRow(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("merchant_id", "channel_id", "external_id", name="uq_contacts_external"),
        Index("ix_contacts_channel_id", "merchant_id", "channel_id", "id"),
        # Audience counts read only these indexes (covering): by window, and by group member.
        Index("ix_contacts_merchant_customer", "merchant_id", "customer_id"),
        # Exclusions are small: they get their own ranges rather than a pass over everyone.
        Index(
            "ix_contacts_opted_out",
            "merchant_id",
            "channel_id",
            "opted_out",
            "last_interaction_time",
        ),
        Index(
            "ix_contacts_state",
            "merchant_id",
            "channel_id",
            "follower_state",
            "opted_out",
            "last_interaction_time",
        ),
        Index(
            "ix_contacts_audience",
            "merchant_id",
            "channel_id",
            "last_interaction_time",
            "opted_out",
            "follower_state",
        ),
        Index(
            "ix_contacts_customer",
            "merchant_id",
            "channel_id",
            "customer_id",
            "last_interaction_time",
            "opted_out",
            "follower_state",
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=64)
    channel_id: str = Field(max_length=64)
    external_id: str = Field(max_length=128)
    display_name: str = Field(default="", max_length=256)
    picture_uri: str = Field(default="", max_length=2000)
    follower_state: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False))
    last_interaction_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    opted_out: bool = False
    customer_id: str | None = Field(default=None, max_length=128)
    has_conversation: bool = False
    observe_time: int = Field(sa_column=_time())
    # When follower_state last changed: a late or redelivered event older than this is ignored.
    state_time: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # The last contact sync run that saw this contact in the channel's follower list.
    seen_sync: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    create_time: int = Field(sa_column=_time())
    update_time: int = Field(sa_column=_time())


class IdempotentRequestRow(SQLModel, table=True):
    """The result of a Create, Copy or Send call, kept under the caller's request id, with a
    fingerprint of the request: the id used again for another request is refused."""

    __tablename__ = "idempotent_requests"

    merchant_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=128)
    resource_name: str = Field(max_length=512)
    create_time: int = Field(sa_column=_time())
    # SHA-256 (hex) of what the request asked for; NULL for rows from before revision 0009.
    request_hash: str | None = Field(default=None, max_length=64)


metadata = SQLModel.metadata
customer_groups = _table(CustomerGroupRow)
customer_group_members = _table(CustomerGroupMemberRow)
contacts = _table(ContactRow)
idempotent_requests = _table(IdempotentRequestRow)


class ChannelRow(SQLModel, table=True):
    """A connected channel account. Disconnected ones keep their row (broadcasts refer to it)
    with credentials destroyed and `delete_time` set."""

    __tablename__ = "channels"
    __table_args__ = (
        Index("ix_channels_merchant_id", "merchant_id", "id"),
        Index(
            "uq_channels_account",
            "merchant_id",
            "type",
            "account_id",
            unique=True,
            sqlite_where=text("delete_time IS NULL"),
            postgresql_where=text("delete_time IS NULL"),
        ),
        Index(
            "ix_channels_next_sync",
            "next_sync_time",
            sqlite_where=text("delete_time IS NULL"),
            postgresql_where=text("delete_time IS NULL"),
        ),
        Index(
            "ix_channels_attention",
            "merchant_id",
            "id",
            sqlite_where=text("issues <> 0 AND delete_time IS NULL"),
            postgresql_where=text("issues <> 0 AND delete_time IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=64)
    type: str = Field(max_length=32)
    state: int = Field(sa_column=Column(SmallInteger, nullable=False))
    tier: int = Field(sa_column=Column(SmallInteger, nullable=False))
    account_id: str = Field(max_length=256)
    display_name: str = Field(default="", max_length=256)
    handle: str = Field(default="", max_length=256)
    picture_uri: str = Field(default="", max_length=2000)
    # Fernet token of the JSON credentials; NULL once disconnected.
    sealed_credentials: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    create_time: int = Field(sa_column=_time())
    update_time: int = Field(sa_column=_time())
    delete_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # Upkeep: when the follower list is next re-synced (NULL once disconnected), and until when
    # a replica holds the claim to start it.
    next_sync_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    sync_lease_expiry: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # When a sync last finished reading the whole follower list.
    followers_sync_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # The webhook: domain.health.WebhookState, the endpoint set, the last test's outcome (or
    # what to set by hand), when it was tested, when the channel last posted an event.
    webhook_state: int = Field(
        default=0, sa_column=Column(SmallInteger, nullable=False, server_default="0")
    )
    webhook_endpoint: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default="")
    )
    webhook_detail: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default="")
    )
    webhook_test_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    last_event_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # The monthly quota when last read (limit NULL: unlimited).
    quota_limit: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    quota_used: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    quota_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # Health: the issues found (a bit per domain.health.Issue; 0: healthy), since when not 0.
    issues: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    unhealthy_since: int | None = Field(default=None, sa_column=_time(nullable=True))


class ContactSyncRow(SQLModel, table=True):
    """One contact sync run. The cursor and counters are committed with each page, so a run
    resumes where it stopped after a crash; the lease says which process is running it."""

    __tablename__ = "contact_syncs"
    __table_args__ = (
        Index("ix_contact_syncs_channel", "channel_id", "id"),
        Index(
            "uq_contact_syncs_running",
            "channel_id",
            unique=True,
            sqlite_where=text("state = 1"),
            postgresql_where=text("state = 1"),
        ),
    )

    # INTEGER on SQLite, where only that spelling makes the key auto-increment.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    channel_id: str = Field(max_length=32)
    state: int = Field(sa_column=Column(SmallInteger, nullable=False))
    phase: int = Field(default=1, sa_column=Column(SmallInteger, nullable=False))
    cursor: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    profile_cursor: str | None = Field(default=None, max_length=32)
    contacts_synced: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    contacts_created: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    contacts_unfollowed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    profiles_fetched: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    error_reason: str = Field(default="", max_length=64)
    message: str = Field(default="", max_length=1024)
    lease_owner: str = Field(default="", max_length=64)
    lease_expiry: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    start_time: int = Field(sa_column=_time())
    end_time: int | None = Field(default=None, sa_column=_time(nullable=True))


class WebhookEventRow(SQLModel, table=True):
    """Webhook event ids already recorded, so a redelivered event changes nothing."""

    __tablename__ = "webhook_events"

    channel_id: str = Field(primary_key=True, max_length=32)
    event_id: str = Field(primary_key=True, max_length=128)
    receive_time: int = Field(sa_column=_time())


class ChannelCredentialRow(SQLModel, table=True):
    """The credential a channel issued for itself from its long-term ones (LINE: a short-lived
    channel access token), sealed like the channel's credentials, shared by every replica.

    `version` counts renewals; a replica renews only under the renewal lease (`lease_owner`
    until `lease_expiry`), taken with a compare-and-set on `version`, so one replica renews
    and the others read what it stored."""

    __tablename__ = "channel_credentials"

    channel_id: str = Field(primary_key=True, max_length=32)
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    issue_time: int = Field(sa_column=_time())
    renew_time: int = Field(sa_column=_time())
    expire_time: int = Field(sa_column=_time())
    version: int = Field(default=1, sa_column=Column(BigInteger, nullable=False))
    lease_owner: str = Field(default="", max_length=64)
    lease_expiry: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


channels = _table(ChannelRow)
channel_credentials = _table(ChannelCredentialRow)
contact_syncs = _table(ContactSyncRow)
webhook_events = _table(WebhookEventRow)


class BroadcastRow(SQLModel, table=True):
    __tablename__ = "broadcasts"
    __table_args__ = (
        Index("ix_broadcasts_merchant_id", "merchant_id", "id"),
        Index("ix_broadcasts_merchant_state", "merchant_id", "state", "id"),
        # List filters and orders: by channel, and by send time (unsent last), newest first;
        Index("ix_broadcasts_merchant_channel", "merchant_id", "channel_id", "id"),
        Index("ix_broadcasts_merchant_send", "merchant_id", text("COALESCE(send_time, -1)"), "id"),
        # … and by schedule time (unscheduled last), the next first.
        Index(
            "ix_broadcasts_merchant_schedule",
            "merchant_id",
            text("COALESCE(schedule_time, 9223372036854775807)"),
            "id",
        ),
        # The scheduled broadcasts by their time (6: SCHEDULED): the due scan reads its head.
        Index(
            "ix_broadcasts_due",
            "schedule_time",
            sqlite_where=text("state = 6"),
            postgresql_where=text("state = 6"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=64)
    channel_id: str = Field(max_length=32)
    display_name: str = Field(max_length=256)
    display_name_folded: str = Field(max_length=1024)
    state: int = Field(sa_column=Column(SmallInteger, nullable=False))
    # Audience: Audience.InteractionWindow's number, and at most one customer group.
    interaction_window: int = Field(sa_column=Column(SmallInteger, nullable=False))
    customer_group_id: str | None = Field(default=None, max_length=32)
    group_name: str = Field(default="", max_length=256)
    # The bubbles as JSON, one object per bubble keyed by its kind (store/broadcasts.py):
    # [{"text": "..."} | {"image": ["original", "preview"]} | {"sticker": [...]} | ...].
    messages: str = Field(sa_column=Column(Text, nullable=False))
    # A silent send (no notification where the channel allows it).
    notification_disabled: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    total: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sent: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    failed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    excluded: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    send_estimate: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    failure_reason: str = Field(default="", max_length=64)
    copied_from: str = Field(default="", max_length=32)
    # A resend goes to the recipients this broadcast did not reach, not to the audience.
    resend_of: str = Field(
        default="", sa_column=Column(String(32), nullable=False, server_default="")
    )
    # Batches not yet done: the broadcast is sent when the last one is.
    open_batches: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    create_time: int = Field(sa_column=_time())
    update_time: int = Field(sa_column=_time())
    send_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    complete_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # Recipient limit it was sent with: NULL none, 0 the remaining quota, else max_recipients;
    # and the reachable recipients it left out.
    recipient_limit: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    left_out_by_limit: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # When a scheduled broadcast is to be sent (kept once it fired).
    schedule_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    # Until when the replica that claimed a due scheduled broadcast is firing it; another
    # replica takes it over after that (a claim lasts a few seconds, and a failed attempt to
    # reach the channel waits out its lease before the next).
    fire_lease_expiry: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # The W3C traceparent of the Send (or Schedule) call that started it, when that call was
    # traced: its batches' spans continue that trace, whichever replica sends them.
    trace_parent: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


broadcasts = _table(BroadcastRow)


class GroupContactRow(SQLModel, table=True):
    """Contacts linked to a customer group's members, with the columns audience counts read.

    A derived table, so an estimate with a group reads one index range instead of joining every
    member to the contacts. Triggers on `contacts` keep it current when a contact changes;
    membership changes update it in the same statement batch (store.groups). Sending snapshots
    recipients from the authoritative join, never from here.
    """

    __tablename__ = "group_contacts"
    __table_args__ = (
        Index(
            "ix_group_contacts_audience",
            "group_id",
            "channel_id",
            "last_interaction_time",
            "opted_out",
            "follower_state",
        ),
        Index("ix_group_contacts_contact", "contact_id"),
    )

    group_id: str = Field(primary_key=True, max_length=32)
    contact_id: str = Field(primary_key=True, max_length=32)
    channel_id: str = Field(max_length=32)
    last_interaction_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    opted_out: bool = False
    follower_state: int = Field(sa_column=Column(SmallInteger, nullable=False))


group_contacts = _table(GroupContactRow)


class AudienceCountRow(SQLModel, table=True):
    """How many contacts of a channel (group_id ''), or of a customer group on a channel, last
    interacted on a day (`day`: days since the epoch, UTC; -2**31 for never), and of those how
    many opted out and how many are unreachable (blocked, not opted out).

    A derived table kept by triggers on `contacts` and `group_contacts` (migration 0009), so an
    estimate adds up whole days instead of reading every contact of the window.
    """

    __tablename__ = "audience_counts"

    channel_id: str = Field(primary_key=True, max_length=64)
    group_id: str = Field(primary_key=True, max_length=32)
    day: int = Field(sa_column=Column(BigInteger, primary_key=True))
    contacts: int = Field(sa_column=Column(BigInteger, nullable=False))
    opted_out: int = Field(sa_column=Column(BigInteger, nullable=False))
    blocked: int = Field(sa_column=Column(BigInteger, nullable=False))


audience_counts = AudienceCountRow.__table__  # type: ignore[attr-defined]


class DeliveryRow(SQLModel, table=True):
    """A recipient of a sent broadcast resolved one by one (failed, not sent, unknown, left out
    by a limit) and what became of it; the others are their batch's (store.batch_recipients).

    `seq` numbers the recipients 0..total-1; batch k holds seq in [k*size, (k+1)*size). A row
    overrides "as its batch" for its recipient. Batches written before recipients were kept on
    the batch have a row per recipient here, PENDING (stored 0) while "as its batch": sent once
    the batch is done, pending while it is open."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Only deliveries resolved one by one (the PENDING rows of batches in the earlier
        # layout are left out).
        Index(
            "ix_deliveries_resolved",
            "broadcast_id",
            "outcome",
            "seq",
            sqlite_where=text("outcome <> 0"),
            postgresql_where=text("outcome <> 0"),
        ),
    )

    broadcast_id: str = Field(primary_key=True, max_length=32)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    contact_id: str = Field(max_length=32)
    external_id: str = Field(max_length=128)
    outcome: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False))
    reason: str = Field(default="", max_length=64)


class BatchRow(SQLModel, table=True):
    """A batch of a broadcast's recipients: one send request, its idempotency key (fixed at
    snapshot time, reused by every attempt), its lease, and its recipients (store.batch_recipients:
    two JSON arrays; NULL for batches written before they were kept here, whose recipients are
    rows of `deliveries`, and on SQLite, where they are rows of `batch_recipients`)."""

    __tablename__ = "batches"
    __table_args__ = (
        # The channel's due batches in turn order (store.dispatch.claim).
        Index("ix_batches_turn", "channel_id", "state", "batch", "broadcast_id"),
        # Few batches are open at a time: the dispatcher finds their channels on this index.
        Index("ix_batches_open", "state", "channel_id"),
        # Open batches in either layout (store.batch_recipients), in turn order: the claim's index.
        Index(
            "ix_batches_open_turn",
            "channel_id",
            "batch",
            "broadcast_id",
            sqlite_where=text(IS_OPEN),
            postgresql_where=text(IS_OPEN),
        ),
    )

    broadcast_id: str = Field(primary_key=True, max_length=32)
    batch: int = Field(sa_column=Column(Integer, primary_key=True))
    channel_id: str = Field(max_length=32)
    idempotency_key: str = Field(max_length=64)
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    size: int = Field(sa_column=Column(Integer, nullable=False))
    state: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    due_time: int = Field(sa_column=_time())
    first_attempt_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    lease_owner: str = Field(default="", max_length=64)
    lease_expiry: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # The channel's id for the request that was accepted (LINE: X-Line-Request-Id), for
    # operators tracing a batch; "" until accepted, or when the channel gave none.
    request_id: str = Field(
        default="", sa_column=Column(String(128), nullable=False, server_default="")
    )
    contact_ids: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    external_ids: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The seqs of its recipients whose contact had a conversation when the snapshot was taken
    # (JSON array, `[]` when none; NULL on batches written before it was noted, whose contacts
    # are read when the batch is recorded): their delivery opens none (store.events).
    talked: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class BatchRecipientsRow(SQLModel, table=True):
    """On SQLite, a batch's recipients and who of them had a conversation, apart from the batch
    row (store.batch_recipients): SQLite rewrites an updated row whole, so leasing and closing
    a batch whose row held the arrays wrote about 37 kB each time. Written once, by the
    snapshot. PostgreSQL keeps them on `batches` (its updates leave out-of-line values where
    they are) and has no such table."""

    __tablename__ = "batch_recipients"

    broadcast_id: str = Field(primary_key=True, max_length=32)
    batch: int = Field(sa_column=Column(Integer, primary_key=True))
    contact_ids: str = Field(sa_column=Column(Text, nullable=False))
    external_ids: str = Field(sa_column=Column(Text, nullable=False))
    talked: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


deliveries = _table(DeliveryRow)
batches = _table(BatchRow)
# Tables that only a SQLite database has (their migrations make them there only).
SQLITE_ONLY = frozenset({BatchRecipientsRow.__tablename__})


class OutboxRow(SQLModel, table=True):
    """The Message Center outbox: one row per accepted batch, written in the transaction that
    records it. Its delivered recipients are the batch's deliveries still PENDING (stored 0), each
    read as a broadcast-message event (after a conversation-created one where `conversations`
    names that delivery), in `seq` order and then recipient order, with a resumable cursor.

    A row of another `kind` (a lifecycle EventKind's value) is one step of the broadcast's
    lifecycle, written in the transaction that makes it: it names no recipient (`first_seq`
    and `last_seq` 0) and holds the broadcast's counters and failure reason at that moment
    (NULL on recipient rows). A partial index finds a merchant's lifecycle rows without reading
    its recipient rows; another finds a broadcast's rows."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_merchant", "merchant_id", "seq"),
        Index(
            "ix_outbox_lifecycle",
            "merchant_id",
            "seq",
            sqlite_where=text("kind <> 0"),
            postgresql_where=text("kind <> 0"),
        ),
        Index("ix_outbox_broadcast", "broadcast_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    merchant_id: str = Field(max_length=64)
    channel_id: str = Field(max_length=32)
    broadcast_id: str = Field(max_length=32)
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    create_time: int = Field(sa_column=_time())
    kind: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False, server_default="0"))
    total: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    sent: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    failed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    excluded: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    failure_reason: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    # Of a row of recipients: the seqs whose delivery created the contact's conversation, as a
    # JSON array (NULL on rows written before it was kept, whose readers look each one up).
    opened: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


outbox = _table(OutboxRow)


class ChannelLeaseRow(SQLModel, table=True):
    """Which process dispatches a channel's batches, until when: one dispatcher per channel
    account, so its rate ceiling holds across replicas."""

    __tablename__ = "channel_leases"

    channel_id: str = Field(primary_key=True, max_length=32)
    owner: str = Field(max_length=64)
    expiry: int = Field(sa_column=Column(BigInteger, nullable=False))


channel_leases = _table(ChannelLeaseRow)


class DispatcherRow(SQLModel, table=True):
    """The dispatchers running (one per `serve` process), each until its heartbeat runs out:
    how many replicas share the channels with work (store.dispatch_work.heartbeat)."""

    __tablename__ = "dispatchers"

    id: str = Field(primary_key=True, max_length=64)
    expiry: int = Field(sa_column=Column(BigInteger, nullable=False))


dispatchers = _table(DispatcherRow)


class ConversationRow(SQLModel, table=True):
    """Contacts whose conversation a broadcast created, and the delivery that created it. Kept
    apart from `contacts` so that recording a delivered batch inserts narrow rows instead of
    rewriting wide, much-indexed contact rows; a contact has a conversation if either says so.
    On SQLite the rows live in the key's b-tree (WITHOUT ROWID): one b-tree to insert into per
    row rather than a table and its key's index. On PostgreSQL the key compares ids as bytes
    (collation "C"): ids are ASCII, so the order and equality are any collation's, and each step
    down the index skips the locale's comparison."""

    __tablename__ = "conversations"
    __table_args__ = {"sqlite_with_rowid": False}

    contact_id: str = Field(
        sa_column=Column(
            String(32).with_variant(String(32, collation="C"), "postgresql"), primary_key=True
        )
    )
    broadcast_id: str = Field(max_length=32)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


conversations = _table(ConversationRow)


class TestSendRow(SQLModel, table=True):
    """A test send of a broadcast: its contacts and what became of each, as JSON
    `[[contact id, outcome, reason], ...]` (at most 10), and who asked. Newest first is
    `id` descending (ids sort by creation time)."""

    __test__ = False  # not a pytest test class
    __tablename__ = "test_sends"
    __table_args__ = (Index("ix_test_sends_broadcast", "broadcast_id", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    merchant_id: str = Field(max_length=64)
    broadcast_id: str = Field(max_length=32)
    channel_id: str = Field(max_length=32)
    recipients: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: str = Field(max_length=128)
    create_time: int = Field(sa_column=_time())


test_sends = _table(TestSendRow)


class SchemaCompatibilityRow(SQLModel, table=True):
    """Per revision the database went through, the oldest revision whose version still runs on
    it (every migration after that one only adds). Written by the migration environment, so a
    version that does not know the database's revision can still tell whether it runs on it
    (store.compatibility)."""

    __tablename__ = "schema_compatibility"

    revision: str = Field(primary_key=True, max_length=32)
    oldest_compatible: str = Field(max_length=32)


schema_compatibility = _table(SchemaCompatibilityRow)


class BroadcastStatisticsRow(SQLModel, table=True):
    """A sent broadcast's statistics: its channel's unit for it, why figures are unavailable
    ("" when they are not), the figures as last read (NULL: withheld or not reported, never
    zero) and when, and the collection's state: when they are read next (NULL: no more) and
    the replica reading them (`lease_owner`, until `lease_expiry`; a claim also moves
    `next_fetch_time` to the lease's expiry, so a claim that lapses comes due again by itself).
    Written when the broadcast's first batch is accepted (store.dispatch.record_sent)."""

    __tablename__ = "broadcast_statistics"
    __table_args__ = (
        Index(
            "ix_broadcast_statistics_due",
            "channel_id",
            "next_fetch_time",
            sqlite_where=text("next_fetch_time IS NOT NULL"),
            postgresql_where=text("next_fetch_time IS NOT NULL"),
        ),
    )

    broadcast_id: str = Field(primary_key=True, max_length=32)
    channel_id: str = Field(max_length=32)
    unit: str = Field(default="", sa_column=Column(String(128), nullable=False, server_default=""))
    unavailable_reason: str = Field(
        default="", sa_column=Column(String(64), nullable=False, server_default="")
    )
    send_time: int = Field(sa_column=_time())  # when its first batch was accepted
    next_fetch_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    lease_owner: str = Field(
        default="", sa_column=Column(String(64), nullable=False, server_default="")
    )
    lease_expiry: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    fetch_time: int | None = Field(default=None, sa_column=_time(nullable=True))
    unique_impressions: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    unique_clicks: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    unique_media_plays: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    # Per bubble and per URL, as JSON (store.statistics); NULL before the first read.
    details: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class StatisticsPacingRow(SQLModel, table=True):
    """When statistics of a channel account may next be read (`next_time`), `step` apart: its
    channel's ceiling for reads, shared by every replica."""

    __tablename__ = "statistics_pacing"

    channel_id: str = Field(primary_key=True, max_length=32)
    next_time: int = Field(sa_column=_time())
    step: int = Field(sa_column=Column(BigInteger, nullable=False))  # microseconds


broadcast_statistics = _table(BroadcastStatisticsRow)
statistics_pacing = _table(StatisticsPacingRow)
