from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.names import ChannelName, ContactName, CustomerGroupName, MerchantName

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)


@given(m=ids, g=ids, c=ids, k=ids)
def test_names_round_trip(m: str, g: str, c: str, k: str) -> None:
    assert MerchantName.parse(str(MerchantName(m))) == MerchantName(m)
    assert CustomerGroupName.parse(str(CustomerGroupName(m, g))) == CustomerGroupName(m, g)
    assert ChannelName.parse(str(ChannelName(m, c))) == ChannelName(m, c)
    assert ContactName.parse(str(ContactName(m, c, k))) == ContactName(m, c, k)


@given(st.text())
def test_any_text_parses_or_names_the_field(value: str) -> None:
    try:
        CustomerGroupName.parse(value, "customer_group")
    except InvalidArgument as e:
        assert [v.field for v in e.violations] == ["customer_group"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "merchants/",
        "merchants/m1/customerGroups/",
        "merchants/m1/customergroups/g",
        "merchants/m1/customerGroups/g/extra",
        "merchants/-m/customerGroups/g",
        "merchants/m 1/customerGroups/g",
        "merchants/" + "m" * 65 + "/customerGroups/g",
    ],
)
def test_malformed_group_names(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        CustomerGroupName.parse(bad)
