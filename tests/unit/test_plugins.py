"""The plugin system: registration, duplicates, misspelled hooks, restricting what loads."""

from __future__ import annotations

import types

import pytest

from broadcaster.channels import Channel, PluginError, hookimpl
from broadcaster.channels.manager import PluginManager
from tests import fakechannel


def _plugin(name: str, *channels: type) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def broadcaster_register_channels(registry):  # type: ignore[no-untyped-def]
        for c in channels:
            registry.add(c)

    module.broadcaster_register_channels = broadcaster_register_channels  # type: ignore[attr-defined]
    return module


def test_test_channel_registers_and_conforms() -> None:
    registry = PluginManager.load((), [fakechannel]).register_channels()
    assert registry.types() == ["fake", "fake-stats"]
    channel = registry.get("fake").from_credentials({"token": "t", "account": "a"}, None)  # type: ignore[arg-type]
    assert isinstance(channel, Channel)


def test_duplicate_channel_types_fail_naming_both_plugins() -> None:
    other = _plugin("other_fake", fakechannel.FakeChannel)
    manager = PluginManager.load((), [fakechannel, other])
    with pytest.raises(PluginError) as e:
        manager.register_channels()
    assert "'fake' is registered twice" in str(e.value)
    assert "tests.fakechannel" in str(e.value) and "other_fake" in str(e.value)


def test_misspelled_hook_fails_at_start_up() -> None:
    module = types.ModuleType("typo")

    @hookimpl
    def broadcaster_register_channel(registry):  # type: ignore[no-untyped-def]
        pass

    module.broadcaster_register_channel = broadcaster_register_channel  # type: ignore[attr-defined]
    with pytest.raises(PluginError):
        PluginManager.load((), [module])


def test_unknown_plugin_name_is_refused() -> None:
    with pytest.raises(PluginError) as e:
        PluginManager.load(("no-such-plugin",), [])
    assert "no-such-plugin" in str(e.value)


def test_a_class_without_the_contract_is_refused() -> None:
    class Half:
        type = "half"

    with pytest.raises(PluginError) as e:
        PluginManager.load((), [_plugin("half_plugin", Half)]).register_channels()
    assert "lacks" in str(e.value)


def test_bad_type_names_are_refused() -> None:
    class Bad(fakechannel.FakeChannel):
        type = "Not A Name"  # type: ignore[misc]

    with pytest.raises(PluginError):
        PluginManager.load((), [_plugin("bad", Bad)]).register_channels()


def test_empty_restriction_loads_no_installed_plugin() -> None:
    assert PluginManager.load((), []).register_channels().types() == []
