"""Test sends: a draft's messages sent now to a few named contacts of its channel.

SendTestBroadcast checks the request (1 to 10 distinct contacts, each of the draft's channel
and known there), the draft (a state that may be tested, messages within the channel's rules,
as for Send) and then the channel's quota for the contacts it will send to: a contact who
opted out or blocked the account is skipped, with a reason, and costs nothing. The channel
sends to each contact and says what became of each (`Channel.send_test`); the test send is
then recorded on the broadcast. Nothing else about the broadcast changes: its state, counters,
deliveries and Message Center events are the broadcast's own.

A repeated request id returns the first test send without sending again. The channel's
idempotency key is derived from the request id, so a retry after a crash between sending and
recording is answered "already accepted" by the channel instead of delivering twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection

from broadcaster.channels import (
    Channel,
    ChannelUnavailable,
    CredentialsInvalid,
    SendBatch,
    SendOutcome,
    SendStatus,
)
from broadcaster.domain import rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.broadcasts import Broadcast
from broadcaster.domain.errors import NotFound, Violations, collect
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import Contact, FollowerState
from broadcaster.domain.names import BroadcastName, ChannelName, ContactName
from broadcaster.domain.paging import fingerprint
from broadcaster.domain.reasons import Reason
from broadcaster.domain.test_sends import MAX_CONTACTS, TestOutcome, TestRecipient, TestSend
from broadcaster.services.broadcasts import Broadcasts, not_found
from broadcaster.services.channels import credentials_invalid, unavailable
from broadcaster.services.context import ServiceContext
from broadcaster.services.idempotent import create_once, recall, request_fingerprint
from broadcaster.services.sending import quota_exceeded, require_valid_messages
from broadcaster.store import broadcasts as broadcast_repo
from broadcaster.store import contacts as contact_repo
from broadcaster.store import test_sends as repo

log = logging.getLogger(__name__)

SEND_TEST = "SendTestBroadcast"
DEFAULT_PAGE, MAX_PAGE = 50, 1000
# Idempotency keys of test sends with a request id: the same for the same merchant and id.
_KEYS = uuid.UUID("5b0c7d3e-2f1a-4c8e-9d6b-7a1e3f5c9b20")

# What the channel's answer for one contact means for it.
_OUTCOMES: dict[SendStatus, tuple[TestOutcome, str]] = {
    SendStatus.ACCEPTED: (TestOutcome.SENT, ""),
    SendStatus.ALREADY_ACCEPTED: (TestOutcome.SENT, ""),
    SendStatus.INVALID_RECIPIENTS: (TestOutcome.FAILED, Reason.INVALID_RECIPIENT),
    SendStatus.QUOTA_EXHAUSTED: (TestOutcome.FAILED, Reason.QUOTA_EXHAUSTED),
    SendStatus.RETRY_LATER: (TestOutcome.FAILED, Reason.CHANNEL_UNAVAILABLE),
    SendStatus.CREDENTIALS_REFUSED: (TestOutcome.FAILED, Reason.CHANNEL_CREDENTIALS_INVALID),
    SendStatus.FATAL: (TestOutcome.FAILED, Reason.CHANNEL_REJECTED),
}


def test_send_name(t: TestSend) -> str:
    return f"{BroadcastName(t.merchant, t.broadcast)}/testSends/{t.id}"


def skip_reason(contact: Contact) -> str:
    """Why a named contact is not sent to, or '' to send."""
    if contact.opted_out:
        return Reason.CONTACT_OPTED_OUT
    if contact.follower_state is FollowerState.BLOCKED:
        return Reason.CONTACT_BLOCKED
    return ""


def outcome_of(outcome: SendOutcome) -> TestRecipient:
    result, reason = _OUTCOMES[outcome.status]
    return TestRecipient("", result, reason)


def _check_contacts(
    v: Violations, merchant: str | None, contacts: Sequence[str]
) -> list[ContactName | None]:
    """Each contact's name, or None where it is invalid (a violation naming its index)."""
    if not contacts:
        v.add("contacts", f"must name 1 to {MAX_CONTACTS} contacts")
    elif len(contacts) > MAX_CONTACTS:
        v.add("contacts", f"must name at most {MAX_CONTACTS} contacts, got {len(contacts)}")
        return []
    parsed: list[ContactName | None] = []
    first: dict[str, int] = {}
    for i, value in enumerate(contacts):
        field = f"contacts[{i}]"
        name = collect(v, lambda: ContactName.parse(value, field))  # noqa: B023
        if name is not None and merchant is not None and name.merchant != merchant:
            v.add(field, "must be a contact of the broadcast's merchant")
            name = None
        if name is not None and str(name) in first:
            v.add(field, f"repeats contacts[{first[str(name)]}]")
            name = None
        if name is not None:
            first[str(name)] = i
        parsed.append(name)
    return parsed


class TestSends:
    __test__ = False  # not a pytest test class

    def __init__(self, ctx: ServiceContext, broadcasts: Broadcasts) -> None:
        self._ctx = ctx
        self._broadcasts = broadcasts

    async def send(
        self, caller: Caller, name: str, contacts: Sequence[str], request_id: str
    ) -> TestSend:
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(name, "name"))
        rules.check_request_id(v, request_id)
        names = _check_contacts(v, n.merchant if n else None, contacts)
        v.raise_if_any()
        assert n is not None
        draft = await self._broadcasts.get(caller, name)  # refuses another merchant's
        request_hash = request_fingerprint(SEND_TEST, name, tuple(contacts))
        earlier = await recall(self._ctx.db, n.merchant, SEND_TEST, request_id, request_hash)
        if earlier is not None:
            return await self._find(earlier)
        draft.require_test_sendable()
        channel = ChannelName(draft.merchant, draft.channel)
        for i, c in enumerate(names):
            if c is not None and c.channel != draft.channel:
                v.add(f"contacts[{i}]", f"must be a contact of the broadcast's channel, {channel}")
        v.raise_if_any()
        _, instance = await self._broadcasts.live(channel)
        require_valid_messages(instance, draft)
        ids = [c.contact for c in names if c is not None]
        found = await self._ctx.db.read_point(
            contact_repo.get_many, draft.merchant, draft.channel, ids
        )
        for i, c in enumerate(names):
            if c is not None and c.contact not in found:
                v.add(f"contacts[{i}]", "no such contact on this channel", Reason.CONTACT_NOT_FOUND)
        v.raise_if_any()

        contacts_named = [found[c.contact] for c in names if c is not None]
        named = [(c, skip_reason(c)) for c in contacts_named]  # each with why it is skipped
        to_send = [c for c, skipped in named if not skipped]
        key = instance_key(n.merchant, request_id)
        sent = await self._send(instance, draft, channel, key, to_send)
        recipients = tuple(
            TestRecipient(c.id, TestOutcome.SKIPPED, skipped)
            if skipped
            else TestRecipient(c.id, sent[c.id].outcome, sent[c.id].reason)
            for c, skipped in named
        )
        made = TestSend(
            merchant=draft.merchant,
            broadcast=draft.id,
            id=new_id(),
            channel=draft.channel,
            recipients=recipients,
            requested_by=caller.label,
            create_time=self._ctx.now(),
        )
        return await self._record(made, name, request_id, request_hash)

    async def _send(
        self,
        instance: Channel,
        draft: Broadcast,
        channel: ChannelName,
        key: str,
        to_send: list[Contact],
    ) -> dict[str, TestRecipient]:
        """Each contact's outcome by contact id, once the quota allows them all."""
        if not to_send:
            return {}
        try:
            quota = await instance.quota()
        except CredentialsInvalid as e:
            raise credentials_invalid(e) from None
        except ChannelUnavailable as e:
            raise unavailable(e) from None
        if quota.remaining is not None and len(to_send) > quota.remaining:
            raise quota_exceeded(len(to_send), quota.remaining, str(channel))
        batch = SendBatch(
            [c.external_id for c in to_send], draft.messages, key, draft.notification_disabled
        )
        try:
            outcomes = list(await instance.send_test(batch))
        except Exception:
            log.exception("the channel failed a test send of %s", channel)
            outcomes = []
        finally:
            self._broadcasts.quota_spent(draft.channel)
        if len(outcomes) != len(to_send):  # a channel that broke its contract
            outcomes = [SendOutcome(SendStatus.RETRY_LATER, detail="no answer")] * len(to_send)
        for c, o in zip(to_send, outcomes, strict=True):
            if o.status not in (SendStatus.ACCEPTED, SendStatus.ALREADY_ACCEPTED):
                log.info("test send to contact %s of %s: %s", c.id, channel, o.detail)
        return {c.id: outcome_of(o) for c, o in zip(to_send, outcomes, strict=True)}

    async def _record(
        self, made: TestSend, name: str, request_id: str, request_hash: str
    ) -> TestSend:
        def create(conn: Connection) -> tuple[TestSend, str]:
            if broadcast_repo.get(conn, made.merchant, made.broadcast) is None:
                raise not_found(name)  # deleted meanwhile
            repo.record(conn, made)
            return made, test_send_name(made)

        return await create_once(
            self._ctx.db,
            made.merchant,
            SEND_TEST,
            request_id,
            request_hash=request_hash,
            create=create,
            find=self._get,
            gone=lambda _: not_found(name),  # the test send went with its draft
            now=lambda: made.create_time,
        )

    @staticmethod
    def _get(conn: Connection, name: str) -> TestSend | None:
        b_name, _, test_id = name.rpartition("/testSends/")
        n = BroadcastName.parse(b_name)
        return repo.get(conn, n.merchant, n.broadcast, test_id)

    async def _find(self, name: str) -> TestSend:
        found = await self._ctx.db.read(self._get, name)
        if found is None:  # its draft was deleted since
            raise NotFound("test send", name, reason=Reason.BROADCAST_NOT_FOUND)
        return found

    async def list_page(
        self, caller: Caller, parent: str, page_size: int, page_token: str
    ) -> tuple[list[TestSend], str]:
        """A page of the broadcast's test sends, newest first."""
        v = Violations()
        n = collect(v, lambda: BroadcastName.parse(parent, "parent"))
        key = fingerprint("testSends", parent)
        page = collect(
            v,
            lambda: self._ctx.pages.request(
                page_size, page_token, key, default=DEFAULT_PAGE, maximum=MAX_PAGE
            ),
        )
        v.raise_if_any()
        assert n is not None and page is not None
        broadcast = await self._broadcasts.get(caller, parent)
        found = await self._ctx.db.read_point(
            repo.list_page, broadcast.merchant, broadcast.id, page
        )
        return found[: page.size], self._ctx.pages.next([t.id for t in found], page, key)


def instance_key(merchant: str, request_id: str) -> str:
    """The channel's idempotency key of a test send: derived from its request id, so a retry
    is recognised by the channel; a fresh one without."""
    if not request_id:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_KEYS, f"{merchant}\n{request_id}"))
