"""Contacts through the application service, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.domain.auth import LOCAL
from broadcaster.domain.errors import InvalidArgument, NotFound
from broadcaster.domain.model import ContactFilter, ContactImport, FollowerState
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def item(external_id: str, **kw: object) -> ContactImport:
    base = ContactImport(
        external_id=external_id,
        display_name="",
        picture_uri="",
        follower_state=FollowerState.UNKNOWN,
        last_interaction_time=None,
        opted_out=False,
        customer_id=None,
        observe_time=EPOCH,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def contacts(ctx: ServiceContext) -> Contacts:
    return Contacts(ctx)


async def test_import_creates_then_merges(contacts: Contacts, channel: str) -> None:
    parent = channel
    made, created = await contacts.batch_create(
        LOCAL, parent, [item("U1", display_name="Ann"), item("U2")]
    )
    assert created == 2 and [c.external_id for c in made] == ["U1", "U2"]
    again, created = await contacts.batch_create(LOCAL, parent, [item("U3"), item("U1")])
    assert created == 1
    assert again[1].id == made[0].id and again[1].display_name == "Ann"


async def test_ten_thousand_contacts_page_through(contacts: Contacts, channel: str) -> None:
    parent = channel
    batch = [item(f"U{n:05d}", customer_id=f"c{n % 7}") for n in range(10_000)]
    _, created = await contacts.batch_create(LOCAL, parent, batch)
    assert created == 10_000
    seen, token = 0, ""
    ids: set[str] = set()
    while True:
        page, token = await contacts.list_page(LOCAL, parent, 1000, token, ContactFilter())
        seen += len(page)
        ids |= {c.id for c in page}
        if not token:
            break
    assert seen == len(ids) == 10_000
    linked, token = await contacts.list_page(
        LOCAL, parent, 1000, "", ContactFilter(customer_id="c3")
    )
    more, token = await contacts.list_page(
        LOCAL, parent, 1000, token, ContactFilter(customer_id="c3")
    )
    assert not token
    assert len(linked + more) == len([n for n in range(10_000) if n % 7 == 3])


async def test_update_mask(contacts: Contacts, channel: str) -> None:
    parent = channel
    (c,), _ = await contacts.batch_create(LOCAL, parent, [item("U1", customer_id="cust-1")])
    name = f"{parent}/contacts/{c.id}"
    updated = await contacts.update(LOCAL, name, ["opted_out"], True, "ignored")
    assert updated.opted_out and updated.customer_id == "cust-1"
    updated = await contacts.update(LOCAL, name, ["customer_id"], False, "")
    assert updated.opted_out and updated.customer_id is None
    out, _ = await contacts.list_page(LOCAL, parent, 0, "", ContactFilter(opted_out=True))
    assert [x.id for x in out] == [c.id]
    with pytest.raises(InvalidArgument) as e:
        await contacts.update(LOCAL, name, ["display_name"], False, "")
    assert e.value.violations[0].field == "update_mask"
    with pytest.raises(NotFound):
        await contacts.update(LOCAL, f"{parent}/contacts/nope", ["opted_out"], True, "")


async def test_import_refuses_duplicates_and_bad_fields(contacts: Contacts, channel: str) -> None:
    parent = channel
    future = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(InvalidArgument) as e:
        await contacts.batch_create(
            LOCAL,
            parent,
            [
                item("U1"),
                item("U1"),
                item("", picture_uri="ftp://x"),
                item("U3", last_interaction_time=future),
            ],
        )
    assert {v.field for v in e.value.violations} == {
        "contacts[1].external_id",
        "contacts[2].external_id",
        "contacts[2].picture_uri",
        "contacts[3].last_interaction_time",
    }


async def test_last_interaction_filter(contacts: Contacts, channel: str) -> None:
    parent = channel
    await contacts.batch_create(
        LOCAL,
        parent,
        [
            item("old", last_interaction_time=T0 - timedelta(days=30)),
            item("new", last_interaction_time=T0),
            item("never"),
        ],
    )
    where = ContactFilter(last_interaction_after=T0 - timedelta(days=1))
    found, _ = await contacts.list_page(LOCAL, parent, 0, "", where)
    assert [c.external_id for c in found] == ["new"]


# Merge rules, checked against a direct model of them for random import sequences.
_times = st.one_of(st.none(), st.integers(0, 1000).map(lambda s: T0 + timedelta(seconds=s)))
_imports = st.builds(
    lambda name, pic, state, last, opt, cust, obs: item(
        "U1",
        display_name=name,
        picture_uri=pic,
        follower_state=state,
        last_interaction_time=last,
        opted_out=opt,
        customer_id=cust,
        observe_time=T0 + timedelta(seconds=obs),
    ),
    st.sampled_from(["", "Ann", "Bob"]),
    st.sampled_from(["", "https://p/1", "https://p/2"]),
    st.sampled_from(list(FollowerState)),
    _times,
    st.booleans(),
    st.sampled_from([None, "c1", "c2"]),
    st.integers(1, 1000),
)


def _model(seq: list[ContactImport]) -> dict[str, object]:
    first = seq[0]
    state = {
        "display_name": first.display_name,
        "picture_uri": first.picture_uri,
        "customer_id": first.customer_id,
        "follower_state": first.follower_state,
        "last": first.last_interaction_time,
        "opted_out": first.opted_out,
        "observed": first.observe_time,
    }
    for i in seq[1:]:
        newer = i.observe_time >= state["observed"]  # type: ignore[operator]
        if i.display_name and newer:
            state["display_name"] = i.display_name
        if i.picture_uri and newer:
            state["picture_uri"] = i.picture_uri
        if i.customer_id is not None and newer:
            state["customer_id"] = i.customer_id
        if state["follower_state"] == FollowerState.UNKNOWN:
            state["follower_state"] = i.follower_state
        if state["last"] is None or (
            i.last_interaction_time is not None and i.last_interaction_time > state["last"]  # type: ignore[operator]
        ):
            state["last"] = (
                i.last_interaction_time
                if state["last"] is None
                else max(
                    i.last_interaction_time,
                    state["last"],  # type: ignore[type-var]
                )
            )
        state["opted_out"] = state["opted_out"] or i.opted_out
        state["observed"] = max(state["observed"], i.observe_time)  # type: ignore[type-var]
    return state


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=st.lists(_imports, min_size=1, max_size=5))
async def test_merge_never_replaces_newer_data(
    contacts: Contacts, channel: str, seq: list[ContactImport]
) -> None:
    external_id = f"U{uuid.uuid4().hex}"  # one contact per example, in the shared channel
    for i in seq:
        (stored,), _ = await contacts.batch_create(
            LOCAL, channel, [replace(i, external_id=external_id)]
        )
    expected = _model(seq)
    assert {
        "display_name": stored.display_name,
        "picture_uri": stored.picture_uri,
        "customer_id": stored.customer_id,
        "follower_state": stored.follower_state,
        "last": stored.last_interaction_time,
        "opted_out": stored.opted_out,
        "observed": stored.observe_time,
    } == expected
