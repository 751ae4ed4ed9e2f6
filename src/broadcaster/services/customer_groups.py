"""Customer groups: create, read, search, delete, and bulk membership."""

from __future__ import annotations

from sqlalchemy import Connection

from broadcaster.domain import rules
from broadcaster.domain.auth import Caller
from broadcaster.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    Violations,
    collect,
)
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import CustomerGroup
from broadcaster.domain.names import BroadcastName, CustomerGroupName, MerchantName
from broadcaster.domain.paging import fingerprint
from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.services.idempotent import create_once, request_fingerprint
from broadcaster.services.listing import open_list
from broadcaster.services.offload import off_loop
from broadcaster.store import groups as repo

MAX_MEMBERS_PER_CALL = 100_000
OFF_LOOP_IDS = 5_000
DEFAULT_PAGE, MAX_PAGE = 50, 1000
DEFAULT_MEMBERS_PAGE = 100
EDITABLE = frozenset({"display_name", "description"})
CREATE = "CreateCustomerGroup"
IN_USE_LISTED = 20  # drafts named when a group in use cannot be deleted


def _not_found(name: str) -> NotFound:
    return NotFound("customer group", name, reason=Reason.CUSTOMER_GROUP_NOT_FOUND)


class CustomerGroups:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def _name(self, caller: Caller, value: str, field: str) -> CustomerGroupName:
        name = CustomerGroupName.parse(value, field)
        if not caller.may_act_for(name.merchant):
            raise _not_found(value)
        return name

    async def create(
        self, caller: Caller, parent: str, display_name: str, description: str, request_id: str
    ) -> CustomerGroup:
        v = Violations()
        merchant = collect(v, lambda: MerchantName.parse(parent, "parent"))
        rules.check_display_name(v, display_name, "customer_group.display_name")
        rules.check_optional_text(
            v, description, "customer_group.description", rules.MAX_DESCRIPTION, multiline=True
        )
        rules.check_request_id(v, request_id)
        v.raise_if_any()
        assert merchant is not None
        caller.require(merchant.merchant)
        m = merchant.merchant

        def create(conn: Connection) -> tuple[CustomerGroup, str]:
            group = repo.create(conn, m, new_id(), display_name, description, self._ctx.now())
            return group, str(CustomerGroupName(m, group.id))

        return await create_once(
            self._ctx.db,
            m,
            CREATE,
            request_id,
            request_hash=request_fingerprint(
                "CreateCustomerGroup", parent, display_name, description
            ),
            create=create,
            find=lambda conn, name: repo.get(conn, m, CustomerGroupName.parse(name).group),
            gone=_not_found,
            now=self._ctx.now,
        )

    async def get(self, caller: Caller, name: str) -> CustomerGroup:
        n = self._name(caller, name, "name")
        found = await self._ctx.db.read(repo.get, n.merchant, n.group)
        if found is None:
            raise _not_found(name)
        return found

    async def list_page(
        self, caller: Caller, parent: str, page_size: int, page_token: str, contains: str
    ) -> tuple[list[CustomerGroup], str]:
        v = Violations()
        rules.check_optional_text(v, contains, "display_name_contains", rules.MAX_DISPLAY_NAME)
        shape = ("groups", contains)
        merchant, page, query = open_list(
            self._ctx.pages,
            caller,
            v,
            parent,
            page_size,
            page_token,
            shape,
            default=DEFAULT_PAGE,
            maximum=MAX_PAGE,
        )
        found = await self._ctx.db.read(repo.list_page, merchant, contains, page)
        return found[: page.size], self._ctx.pages.next([g.id for g in found], page, query)

    async def update(
        self, caller: Caller, name: str, paths: list[str], display_name: str, description: str
    ) -> CustomerGroup:
        """Change the fields `paths` names (`*`: both); the others keep their value."""
        v = Violations()
        n = collect(v, lambda: CustomerGroupName.parse(name, "customer_group.name"))
        fields = set(EDITABLE) if paths == ["*"] else set(paths)
        if not paths:
            v.add("update_mask", f"must name the fields to change: {', '.join(sorted(EDITABLE))}")
        for p in sorted(fields - EDITABLE):
            v.add("update_mask", f"names {p[:100]!r}; editable: {', '.join(sorted(EDITABLE))}")
        if "display_name" in fields:
            rules.check_display_name(v, display_name, "customer_group.display_name")
        if "description" in fields:
            rules.check_optional_text(
                v, description, "customer_group.description", rules.MAX_DESCRIPTION, multiline=True
            )
        v.raise_if_any()
        assert n is not None
        if not caller.may_act_for(n.merchant):
            raise _not_found(name)

        def tx(conn: Connection) -> CustomerGroup:
            found = repo.get(conn, n.merchant, n.group, lock=True)
            if found is None:
                raise _not_found(name)
            return repo.rename(
                conn,
                found,
                display_name if "display_name" in fields else found.display_name,
                description if "description" in fields else found.description,
                self._ctx.now(),
            )

        return await self._ctx.db.write(tx)

    async def members_page(
        self, caller: Caller, group: str, page_size: int, page_token: str
    ) -> tuple[list[str], str]:
        """A page of the group's customer ids, ascending, and the token of the next page."""
        v = Violations()
        n = collect(v, lambda: CustomerGroupName.parse(group, "customer_group"))
        key = fingerprint(group, "members")
        page = collect(
            v,
            lambda: self._ctx.pages.request(
                page_size, page_token, key, default=DEFAULT_MEMBERS_PAGE, maximum=MAX_PAGE
            ),
        )
        v.raise_if_any()
        assert n is not None and page is not None
        if not caller.may_act_for(n.merchant):
            raise _not_found(group)

        def read(conn: Connection) -> list[str] | None:
            if repo.get(conn, n.merchant, n.group) is None:
                return None
            return repo.members_page(conn, n.group, page)

        found = await self._ctx.db.read(read)
        if found is None:
            raise _not_found(group)
        return found[: page.size], self._ctx.pages.next(found, page, key)

    async def delete(self, caller: Caller, name: str) -> None:
        """Delete the group, unless the audience of a draft or a scheduled broadcast uses it
        (FAILED_PRECONDITION `CUSTOMER_GROUP_IN_USE` naming them): a send to a deleted group
        would reach nobody. Broadcasts already sent or sending do not hold it."""
        n = self._name(caller, name, "name")

        def tx(conn: Connection) -> bool:
            # The row lock orders this against a draft saved or sent with the group meanwhile.
            if repo.get(conn, n.merchant, n.group, lock=True) is None:
                return False
            using = repo.drafts_using(conn, n.merchant, n.group, IN_USE_LISTED)
            if using:
                names = [str(BroadcastName(n.merchant, b)) for b in using]
                raise FailedPrecondition(
                    f"Drafts or scheduled broadcasts use this customer group ({', '.join(names)}"
                    f"{', …' if len(names) == IN_USE_LISTED else ''}): change their audience or "
                    "delete them first (unschedule a scheduled one to edit it).",
                    reason=Reason.CUSTOMER_GROUP_IN_USE,
                    violations=[
                        PreconditionViolation("BROADCAST", b, "its audience uses this group")
                        for b in names
                    ],
                    broadcasts=",".join(names),
                )
            return repo.delete_group(conn, n.merchant, n.group)

        if not await self._ctx.db.write(tx):
            raise _not_found(name)

    def _check_ids(self, customer_ids: list[str]) -> None:
        v = Violations()
        if not customer_ids:
            v.add("customer_ids", "must name at least one customer id")
        elif len(customer_ids) > MAX_MEMBERS_PER_CALL:
            v.add("customer_ids", f"must hold at most {MAX_MEMBERS_PER_CALL:,} ids per call")
        else:
            for i, cid in enumerate(customer_ids):
                if not rules.is_printable_id(cid, rules.MAX_CUSTOMER_ID):
                    v.add(
                        f"customer_ids[{i}]",
                        f"must be 1 to {rules.MAX_CUSTOMER_ID} printable characters without spaces",
                    )
                    if len(v.items) >= 100:  # enough to act on; the rest are not listed
                        break
        v.raise_if_any()

    async def _change_members(
        self, caller: Caller, group: str, customer_ids: list[str], adding: bool
    ) -> tuple[int, int]:
        v = Violations()
        n = collect(v, lambda: CustomerGroupName.parse(group, "customer_group"))
        try:  # a large batch is checked in a worker thread, off the event loop
            if len(customer_ids) > OFF_LOOP_IDS:
                await off_loop(self._check_ids, customer_ids)
            else:
                self._check_ids(customer_ids)
        except InvalidArgument as e:
            v.items.extend(e.violations)
        v.raise_if_any()
        assert n is not None
        if not caller.may_act_for(n.merchant):
            raise _not_found(group)

        def tx(conn: Connection) -> tuple[int, int]:
            found = repo.get(conn, n.merchant, n.group, lock=True)
            if found is None:
                raise _not_found(group)
            change = repo.add_members if adding else repo.remove_members
            count = change(conn, found, customer_ids, self._ctx.now())
            return abs(count - found.member_count), count

        return await self._ctx.db.write(tx)

    async def add_members(
        self, caller: Caller, group: str, customer_ids: list[str]
    ) -> tuple[int, int]:
        """Returns (how many were added, member count after)."""
        return await self._change_members(caller, group, customer_ids, adding=True)

    async def remove_members(
        self, caller: Caller, group: str, customer_ids: list[str]
    ) -> tuple[int, int]:
        """Returns (how many were removed, member count after)."""
        return await self._change_members(caller, group, customer_ids, adding=False)
