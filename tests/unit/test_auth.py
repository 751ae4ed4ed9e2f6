from __future__ import annotations

import pytest

from broadcaster.api.auth import authenticate
from broadcaster.config import ConfigError, parse_tokens
from broadcaster.domain.errors import NotFound, Unauthenticated


def test_parse_and_authenticate() -> None:
    table = parse_tokens("tokA-0123456789abc=m1, m2; tokB-0123456789abc=*")
    a = authenticate(table, "Bearer tokA-0123456789abc")
    assert a.may_act_for("m1") and a.may_act_for("m2") and not a.may_act_for("m3")
    assert authenticate(table, "bearer tokB-0123456789abc").may_act_for("anyone")
    with pytest.raises(NotFound):
        a.require("m3")
    assert a.label == "token#1"  # never the token itself


@pytest.mark.parametrize(
    "spec", ["tok", "=m1", "short=m1", "tokA-0123456789abc=", "tokA-0123456789abc=*,m1"]
)
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_tokens(spec)


@pytest.mark.parametrize(
    ("header", "reason"),
    [(None, "TOKEN_MISSING"), ("Bearer", "TOKEN_MALFORMED"), ("Bearer nope", "TOKEN_UNKNOWN")],
)
def test_refusals(header: str | None, reason: str) -> None:
    with pytest.raises(Unauthenticated) as e:
        authenticate(parse_tokens("tokA-0123456789abc=*"), header)
    assert e.value.reason == reason


def test_empty_table() -> None:
    assert parse_tokens("").empty
