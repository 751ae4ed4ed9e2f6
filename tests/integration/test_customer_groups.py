"""Customer groups through the application service, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster.domain.auth import LOCAL, Caller
from broadcaster.domain.errors import InvalidArgument, NotFound
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups


@pytest.fixture
def groups(ctx: ServiceContext) -> CustomerGroups:
    return CustomerGroups(ctx)


async def test_create_get_and_request_id(groups: CustomerGroups, merchant: str) -> None:
    parent = f"merchants/{merchant}"
    first = await groups.create(LOCAL, parent, "VIP customers", "spent over 10k", "req-1")
    again = await groups.create(LOCAL, parent, "VIP customers", "spent over 10k", "req-1")
    assert again == first
    with pytest.raises(InvalidArgument) as e:  # the id again, for another group
        await groups.create(LOCAL, parent, "something else", "", "req-1")
    assert e.value.reason == "REQUEST_ID_REUSED"
    assert (await groups.get(LOCAL, f"{parent}/customerGroups/{first.id}")) == first
    listed, _ = await groups.list_page(LOCAL, parent, 0, "", "")
    assert [g.id for g in listed] == [first.id]


async def test_concurrent_creates_with_one_request_id_create_one_group(
    groups: CustomerGroups, merchant: str
) -> None:
    parent = f"merchants/{merchant}"
    made = await asyncio.gather(*(groups.create(LOCAL, parent, "G", "", "same") for _ in range(8)))
    assert len({g.id for g in made}) == 1
    listed, _ = await groups.list_page(LOCAL, parent, 0, "", "")
    assert len(listed) == 1


async def test_members_are_idempotent_and_counted(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "G", "", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    assert await groups.add_members(LOCAL, name, ["c1", "c2", "c2", "c3"]) == (3, 3)
    assert await groups.add_members(LOCAL, name, ["c3", "c4"]) == (1, 4)
    assert await groups.remove_members(LOCAL, name, ["c1", "nope"]) == (1, 3)
    assert (await groups.get(LOCAL, name)).member_count == 3


async def test_hundred_thousand_members_in_one_call(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "Big", "", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    ids = [f"cust-{n}" for n in range(100_000)]
    assert await groups.add_members(LOCAL, name, ids) == (100_000, 100_000)
    assert await groups.add_members(LOCAL, name, ids[:10]) == (0, 100_000)


async def test_search_newest_first_and_paging(groups: CustomerGroups, merchant: str) -> None:
    parent = f"merchants/{merchant}"
    names = ["Summer VIP", "vip winter", "Regulars", "VIP_%", "會員 VIP", "Ünïcode Straße"]
    made = [await groups.create(LOCAL, parent, n, "", "") for n in names]
    found, _ = await groups.list_page(LOCAL, parent, 0, "", "vip")
    assert [g.display_name for g in found] == ["會員 VIP", "VIP_%", "vip winter", "Summer VIP"]
    # LIKE wildcards in the search text are literal.
    found, _ = await groups.list_page(LOCAL, parent, 0, "", "_%")
    assert [g.display_name for g in found] == ["VIP_%"]
    found, _ = await groups.list_page(LOCAL, parent, 0, "", "STRASSE")
    assert [g.display_name for g in found] == ["Ünïcode Straße"]
    found, _ = await groups.list_page(LOCAL, parent, 0, "", "會員")
    assert len(found) == 1

    seen, token = [], ""
    while True:
        page, token = await groups.list_page(LOCAL, parent, 4, token, "")
        seen += [g.id for g in page]
        if not token:
            break
    assert seen == [g.id for g in reversed(made)]


async def test_page_token_of_other_query_is_refused(groups: CustomerGroups, merchant: str) -> None:
    parent = f"merchants/{merchant}"
    for n in range(3):
        await groups.create(LOCAL, parent, f"g{n}", "", "")
    _, token = await groups.list_page(LOCAL, parent, 1, "", "")
    with pytest.raises(InvalidArgument) as e:
        await groups.list_page(LOCAL, parent, 1, token, "g")
    assert e.value.reason == "INVALID_PAGE_TOKEN"


async def test_other_merchants_groups_do_not_exist(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "G", "", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    outsider = Caller(label="t", merchants=frozenset({"someone-else"}))
    for call in (
        groups.get(outsider, name),
        groups.delete(outsider, name),
        groups.add_members(outsider, name, ["x"]),
        groups.list_page(outsider, f"merchants/{merchant}", 0, "", ""),
    ):
        with pytest.raises(NotFound):
            await call
    # The same group under the outsider's own merchant id is simply absent.
    with pytest.raises(NotFound):
        await groups.get(outsider, f"merchants/someone-else/customerGroups/{g.id}")


async def test_delete_removes_members(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "G", "", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    await groups.add_members(LOCAL, name, ["a", "b"])
    await groups.delete(LOCAL, name)
    with pytest.raises(NotFound):
        await groups.get(LOCAL, name)
    with pytest.raises(NotFound):
        await groups.delete(LOCAL, name)


async def test_bad_input_names_every_field(groups: CustomerGroups) -> None:
    with pytest.raises(InvalidArgument) as e:
        await groups.create(LOCAL, "merchant/x", " ", "d" * 1025, "has space")
    fields = {v.field for v in e.value.violations}
    assert fields == {
        "parent",
        "customer_group.display_name",
        "customer_group.description",
        "request_id",
    }


async def test_update_changes_only_the_masked_fields(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "VIP", "spent over 10k", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    renamed = await groups.update(LOCAL, name, ["display_name"], "Gold members", "ignored")
    assert (renamed.display_name, renamed.description) == ("Gold members", "spent over 10k")
    assert renamed.update_time >= g.update_time and renamed.create_time == g.create_time
    both = await groups.update(LOCAL, name, ["*"], "Gold", "")
    assert (both.display_name, both.description) == ("Gold", "")
    # The search reads the new name.
    found, _ = await groups.list_page(LOCAL, f"merchants/{merchant}", 0, "", "gold")
    assert [f.id for f in found] == [g.id]
    with pytest.raises(InvalidArgument) as e:
        await groups.update(LOCAL, name, ["display_name", "member_count"], " ", "")
    assert {v.field for v in e.value.violations} == {"update_mask", "customer_group.display_name"}
    with pytest.raises(InvalidArgument) as e:
        await groups.update(LOCAL, name, [], "x", "")
    assert [v.field for v in e.value.violations] == ["update_mask"]
    with pytest.raises(NotFound):
        await groups.update(LOCAL, f"merchants/{merchant}/customerGroups/none", ["*"], "x", "")
    outsider = Caller(label="t", merchants=frozenset({"someone-else"}))
    with pytest.raises(NotFound):
        await groups.update(outsider, name, ["display_name"], "x", "")


async def test_members_listed_in_order_page_by_page(groups: CustomerGroups, merchant: str) -> None:
    g = await groups.create(LOCAL, f"merchants/{merchant}", "G", "", "")
    name = f"merchants/{merchant}/customerGroups/{g.id}"
    ids = [f"c{n:03}" for n in range(250)] + ["x" * 128]
    await groups.add_members(LOCAL, name, list(reversed(ids)))
    seen: list[str] = []
    token = ""
    while True:
        page, token = await groups.members_page(LOCAL, name, 100, token)
        seen += page
        if not token:
            break
    assert seen == sorted(ids)  # a 128-character id carries the last page's token
    first, _ = await groups.members_page(LOCAL, name, 0, "")
    assert len(first) == 100  # the default page
    await groups.remove_members(LOCAL, name, ["c000"])
    first, _ = await groups.members_page(LOCAL, name, 1, "")
    assert first == ["c001"]
    other = await groups.create(LOCAL, f"merchants/{merchant}", "Other", "", "")
    other_name = f"merchants/{merchant}/customerGroups/{other.id}"
    assert await groups.members_page(LOCAL, other_name, 0, "") == ([], "")
    _, token = await groups.members_page(LOCAL, name, 1, "")
    with pytest.raises(InvalidArgument) as e:  # a token of another group's list
        await groups.members_page(LOCAL, other_name, 1, token)
    assert e.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(NotFound):
        await groups.members_page(LOCAL, f"merchants/{merchant}/customerGroups/none", 0, "")
    outsider = Caller(label="t", merchants=frozenset({"someone-else"}))
    with pytest.raises(NotFound):
        await groups.members_page(outsider, name, 0, "")
    with pytest.raises(InvalidArgument) as e:
        await groups.members_page(LOCAL, "merchants/x/groups/g", -1, "")
    assert {v.field for v in e.value.violations} == {"customer_group", "page_size"}
