"""Entry point of the `line` channel plugin (entry-point group `broadcaster`)."""

from __future__ import annotations

from broadcaster.channels import ChannelRegistry, hookimpl


@hookimpl
def broadcaster_register_channels(registry: ChannelRegistry) -> None:
    from broadcaster_line.channel import LineChannel

    registry.add(LineChannel)
