"""The database schema as SQLModel tables. Times are integer microseconds since the epoch (UTC).

Integer times compare and index the same way on SQLite and PostgreSQL, which keeps the
audience and snapshot queries portable and fast.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, SmallInteger, UniqueConstraint
from sqlmodel import Field, SQLModel


def _time(nullable: bool = False) -> Column[int]:
    return Column(BigInteger, nullable=nullable)


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

    group_id: str = Field(primary_key=True, max_length=32)
    customer_id: str = Field(primary_key=True, max_length=128)


class ContactRow(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("merchant_id", "channel_id", "external_id", name="uq_contacts_external"),
        Index("ix_contacts_channel_id", "merchant_id", "channel_id", "id"),
        Index("ix_contacts_customer", "merchant_id", "channel_id", "customer_id"),
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
    create_time: int = Field(sa_column=_time())
    update_time: int = Field(sa_column=_time())


class IdempotentRequestRow(SQLModel, table=True):
    """The result of a Create or Send call, kept under the caller's request id."""

    __tablename__ = "idempotent_requests"

    merchant_id: str = Field(primary_key=True, max_length=64)
    method: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=128)
    resource_name: str = Field(max_length=512)
    create_time: int = Field(sa_column=_time())


metadata = SQLModel.metadata
customer_groups = CustomerGroupRow.__table__  # type: ignore[attr-defined]
customer_group_members = CustomerGroupMemberRow.__table__  # type: ignore[attr-defined]
contacts = ContactRow.__table__  # type: ignore[attr-defined]
idempotent_requests = IdempotentRequestRow.__table__  # type: ignore[attr-defined]
