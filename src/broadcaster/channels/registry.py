"""The registry plugins add channel classes to."""

from __future__ import annotations

import re

from broadcaster.channels.protocol import Channel

_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class PluginError(RuntimeError):
    """A plugin is broken or conflicts with another; start-up stops."""


class UnknownChannelType(LookupError):
    def __init__(self, name: str, installed: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.installed = installed


class ChannelRegistry:
    def __init__(self) -> None:
        self._types: dict[str, tuple[type[Channel], str]] = {}
        self.current_plugin = "?"

    def add(self, channel: type[Channel]) -> None:
        name = getattr(channel, "type", None)
        if not isinstance(name, str) or not _TYPE.fullmatch(name):
            raise PluginError(
                f"plugin {self.current_plugin!r}: {channel!r} needs a `type` of lower-case letters,"
                f" digits, '-' or '_', got {name!r}"
            )
        missing = [
            attr
            for attr in ("display_name", "capabilities", "credential_fields", "from_credentials")
            if not hasattr(channel, attr)
        ]
        if missing:
            raise PluginError(f"plugin {self.current_plugin!r}: channel {name!r} lacks {missing}")
        if name in self._types:
            _, other = self._types[name]
            raise PluginError(
                f"channel type {name!r} is registered twice: by plugin {other!r} and by plugin "
                f"{self.current_plugin!r}; uninstall one or restrict BROADCASTER_PLUGINS"
            )
        self._types[name] = (channel, self.current_plugin)

    def get(self, name: str) -> type[Channel]:
        found = self._types.get(name)
        if found is None:
            raise UnknownChannelType(name, self.types())
        return found[0]

    def types(self) -> list[str]:
        return sorted(self._types)
