"""A typed wrapper around pluggy: loads plugins and calls hooks. No other module calls
`pm.hook.*` directly."""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from broadcaster.channels import hookspecs
from broadcaster.channels.registry import ChannelRegistry, PluginError


class PluginManager:
    def __init__(self, plugins: Iterable[object] = ()) -> None:
        """`plugins`: modules or objects to register directly (built-ins, tests)."""
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        for plugin in plugins:
            self._pm.register(plugin)

    @classmethod
    def load(cls, allowed: tuple[str, ...] | None, plugins: Iterable[object] = ()) -> PluginManager:
        """Register `plugins`, then the installed ones of the `broadcaster` entry-point group.

        `allowed` is BROADCASTER_PLUGINS: None loads every installed plugin, () none, and
        ("line", "sms") only those entry-point names (an unknown name is an error)."""
        manager = cls(plugins)
        if allowed is None:
            manager._pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        else:
            for name in allowed:
                loaded = manager._pm.load_setuptools_entrypoints(hookspecs.PROJECT, name=name)
                if loaded == 0 and manager._pm.get_plugin(name) is None:
                    raise PluginError(f"BROADCASTER_PLUGINS names {name!r}, which is not installed")
        try:
            manager._pm.check_pending()
        except pluggy.PluginValidationError as e:
            raise PluginError(str(e)) from e
        return manager

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self._pm.list_name_plugin() if name is not None)

    def register_channels(self) -> ChannelRegistry:
        registry = ChannelRegistry()
        for impl in reversed(self._pm.hook.broadcaster_register_channels.get_hookimpls()):
            registry.current_plugin = impl.plugin_name
            impl.function(registry=registry)
        registry.current_plugin = "?"
        return registry
