"""Contacts of a channel: bulk import (merge by external id), read, filtered list, update."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from broadcaster.domain import rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.errors import InvalidArgument, NotFound, Violations, collect
from broadcaster.domain.model import Contact, ContactChange, ContactFilter, ContactImport
from broadcaster.domain.names import ChannelName, ContactName
from broadcaster.domain.paging import fingerprint
from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.services.offload import off_loop
from broadcaster.store import channels as channel_repo
from broadcaster.store import contacts as repo

MAX_IMPORT = 10_000
OFF_LOOP_ITEMS = 500
DEFAULT_PAGE, MAX_PAGE = 100, 1000
# Clocks of calling services drift; times further ahead than this are refused as wrong.
CLOCK_SKEW = timedelta(minutes=5)
UPDATABLE = frozenset({"opted_out", "customer_id"})


def _not_found(name: str) -> NotFound:
    return NotFound("contact", name, reason=Reason.CONTACT_NOT_FOUND)


def _require_channel(conn: Connection, channel: ChannelName) -> None:
    if not channel_repo.exists(conn, channel.merchant, channel.channel):
        raise NotFound("channel", str(channel), reason=Reason.CHANNEL_NOT_FOUND)


def _check_import(v: Violations, i: int, item: ContactImport, now: datetime) -> None:
    f = f"contacts[{i}]"
    if not rules.is_printable_id(item.external_id, rules.MAX_EXTERNAL_ID):
        v.add(f"{f}.external_id", "must be 1 to 128 printable characters without spaces")
    rules.check_optional_text(v, item.display_name, f"{f}.display_name", rules.MAX_DISPLAY_NAME)
    if item.picture_uri and not item.picture_uri.startswith(("https://", "http://")):
        v.add(f"{f}.picture_uri", "must be an http(s) URL")
    rules.check_optional_text(v, item.picture_uri, f"{f}.picture_uri", rules.MAX_URI)
    if item.customer_id is not None:
        rules.check_customer_id(v, item.customer_id, f"{f}.customer_id")
    if item.last_interaction_time is not None and item.last_interaction_time > now + CLOCK_SKEW:
        v.add(f"{f}.last_interaction_time", "must not be in the future")
    if item.observe_time > now + CLOCK_SKEW:
        v.add(f"{f}.observe_time", "must not be in the future")


def _check_batch(items: list[ContactImport], now: datetime) -> list[ContactImport]:
    """The items, each checked, with an unset observe time taken as `now`."""
    v = Violations()
    if not items:
        v.add("contacts", "must hold at least one contact")
    elif len(items) > MAX_IMPORT:
        v.add("contacts", f"must hold at most {MAX_IMPORT:,} contacts per call")
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            _check_import(v, i, item, now)
            first = seen.setdefault(item.external_id, i)
            if first != i:
                v.add(f"contacts[{i}].external_id", f"repeats contacts[{first}].external_id")
            if len(v.items) >= 100:
                break
    v.raise_if_any()
    return [i if i.observe_time.timestamp() > 0 else replace(i, observe_time=now) for i in items]


class Contacts:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def _name(self, caller: Caller, value: str, field: str) -> ContactName:
        name = ContactName.parse(value, field)
        if not caller.may_act_for(name.merchant):
            raise _not_found(value)
        return name

    async def batch_create(
        self, caller: Caller, parent: str, items: list[ContactImport]
    ) -> tuple[list[Contact], int]:
        """Merge the contacts in; returns them as stored, in request order, and how many are new.

        Items whose `observe_time` is the epoch (unset) are taken as observed now."""
        now = self._ctx.now()
        v = Violations()
        channel = collect(v, lambda: ChannelName.parse(parent, "parent"))
        stamped: list[ContactImport] = []
        try:  # a large batch is checked in a worker thread, off the event loop
            if len(items) > OFF_LOOP_ITEMS:
                stamped = await off_loop(_check_batch, items, now)
            else:
                stamped = _check_batch(items, now)
        except InvalidArgument as e:
            v.items.extend(e.violations)
        v.raise_if_any()
        assert channel is not None
        caller.require(channel.merchant)

        def tx(conn: Connection) -> tuple[list[Contact], int]:
            _require_channel(conn, channel)
            return repo.merge(conn, channel.merchant, channel.channel, stamped, self._ctx.now())

        return await self._ctx.db.write(tx)

    async def get(self, caller: Caller, name: str) -> Contact:
        n = self._name(caller, name, "name")
        found = await self._ctx.db.read(repo.get, n.merchant, n.channel, n.contact)
        if found is None:
            raise _not_found(name)
        return found

    async def list_page(
        self, caller: Caller, parent: str, page_size: int, page_token: str, where: ContactFilter
    ) -> tuple[list[Contact], str]:
        v = Violations()
        channel = collect(v, lambda: ChannelName.parse(parent, "parent"))
        if where.customer_id is not None:
            rules.check_customer_id(v, where.customer_id, "customer_id")
        query = fingerprint("contacts", parent, where)
        page = collect(
            v,
            lambda: self._ctx.pages.request(
                page_size, page_token, query, default=DEFAULT_PAGE, maximum=MAX_PAGE
            ),
        )
        v.raise_if_any()
        assert channel is not None and page is not None
        caller.require(channel.merchant)

        def tx(conn: Connection) -> list[Contact]:
            _require_channel(conn, channel)
            return repo.list_page(conn, channel.merchant, channel.channel, where, page)

        found = await self._ctx.db.read(tx)
        return found[: page.size], self._ctx.pages.next([c.id for c in found], page, query)

    async def update(
        self,
        caller: Caller,
        name: str,
        paths: list[str],
        opted_out: bool,
        customer_id: str,
    ) -> Contact:
        v = Violations()
        n = collect(v, lambda: ContactName.parse(name, "contact.name"))
        fields = set(UPDATABLE) if paths == ["*"] else set(paths)
        if not paths:
            v.add("update_mask", "must name the fields to change: opted_out, customer_id")
        for p in sorted(fields - UPDATABLE):
            v.add(
                "update_mask", f"names {p!r}, which cannot be updated (only opted_out, customer_id)"
            )
        if "customer_id" in fields and customer_id:
            rules.check_customer_id(v, customer_id, "contact.customer_id")
        v.raise_if_any()
        assert n is not None
        if not caller.may_act_for(n.merchant):
            raise _not_found(name)
        edit = ContactChange(
            opted_out=opted_out if "opted_out" in fields else None,
            customer_id=customer_id or None if "customer_id" in fields else None,
            clear_customer="customer_id" in fields and not customer_id,
        )
        found = await self._ctx.db.write(
            repo.change, n.merchant, n.channel, n.contact, edit, self._ctx.now()
        )
        if found is None:
            raise _not_found(name)
        return found
