"""The API maps every domain value to its protobuf enum and back: each domain member has exactly
one number, and every number but the unset 0 names one member, so neither side depends on the
other's numbering."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from broadcaster.api import convert, convert_broadcasts
from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.broadcasts import BroadcastState
from broadcaster.domain.deliveries import DeliveryOutcome, EventKind
from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.model import (
    AccountTier,
    ChannelState,
    CredentialState,
    FollowerState,
    SyncState,
)
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2 as channel_pb
from broadcaster.v1 import contact_service_pb2 as contact_pb
from broadcaster.v1 import event_service_pb2 as event_pb

MAPS: list[tuple[type[Enum], dict[Any, int], EnumTypeWrapper]] = [
    (InteractionWindow, convert_broadcasts.WINDOWS_OUT, pb.Audience.InteractionWindow),
    (BroadcastState, convert_broadcasts.STATES_OUT, pb.Broadcast.State),
    (DeliveryOutcome, convert_broadcasts.OUTCOMES_OUT, pb.Delivery.Outcome),
    (EventKind, convert_broadcasts.EVENT_KINDS_OUT, event_pb.Event.Kind),
    (SyncState, convert.SYNC_STATES_OUT, channel_pb.ContactSync.State),
    (AccountTier, convert.TIERS_OUT, channel_pb.Channel.Tier),
    (ChannelState, convert.CHANNEL_STATES_OUT, channel_pb.Channel.State),
    (CredentialState, convert.CREDENTIAL_STATES_OUT, channel_pb.Channel.CredentialState),
]


@pytest.mark.parametrize(("domain", "out", "proto"), MAPS, ids=lambda x: getattr(x, "__name__", ""))
def test_each_domain_value_has_one_api_number(
    domain: type[Enum], out: dict[Any, int], proto: EnumTypeWrapper
) -> None:
    assert set(out) == set(domain)
    numbers = list(out.values())
    assert len(set(numbers)) == len(numbers)
    assert set(numbers) == set(proto.values()) - {0}


def test_follower_states_cover_the_api_including_unset() -> None:
    """FollowerState.UNKNOWN is the API's unset 0: a contact whose state nobody reported."""
    out = convert.FOLLOWER_STATES_OUT
    assert set(out) == set(FollowerState)
    assert set(out.values()) == set(contact_pb.Contact.FollowerState.values())
    for state, number in out.items():
        assert convert.follower_state(number, "f") is state


def test_numbers_map_back_and_unknown_ones_name_the_field() -> None:
    for window, number in convert_broadcasts.WINDOWS_OUT.items():
        assert convert_broadcasts.window_in(number) is window
    assert convert_broadcasts.window_in(0) is None
    assert convert_broadcasts.window_in(99) is None  # the service asks for a known window
    for state, number in convert_broadcasts.STATES_OUT.items():
        assert convert_broadcasts.state_in(number, "state") is state
    for outcome, number in convert_broadcasts.OUTCOMES_OUT.items():
        assert convert_broadcasts.outcome_in(number, "outcome") is outcome
    assert convert_broadcasts.state_in(0, "state") is None
    assert convert_broadcasts.outcome_in(0, "outcome") is None
    for parse, field in [
        (convert_broadcasts.state_in, "state"),
        (convert_broadcasts.outcome_in, "outcome"),
        (convert.follower_state, "contacts[0].follower_state"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            parse(99, field)
        assert [v.field for v in raised.value.violations] == [field]
