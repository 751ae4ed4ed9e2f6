"""Hook specifications of the `broadcaster` plugin system (entry-point group `broadcaster`).

Hooks only register things; the work is done by methods of the registered classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from broadcaster.channels.registry import ChannelRegistry

PROJECT = "broadcaster"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def broadcaster_register_channels(registry: ChannelRegistry) -> None:
    """Register channel types by calling `registry.add(SomeChannel)`.

    Called once at start-up, before the server accepts calls. Registering a type name that
    another plugin already registered stops start-up with an error naming both.

    Since 0.1.
    """
