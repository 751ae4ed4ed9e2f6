"""The "LINE Platform" the demo plays against: the LINE emulator.

This is the only module of the tools that names the emulator's package, and it imports it only
when the demo runs: the service and the tools never need it otherwise, and production installs
leave it out.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from broadcaster.tools.demo.shop import DemoFailed

if TYPE_CHECKING:
    from broadcaster_line_emulator import Account, LineEmulator, WebhookResult

__all__ = ["DISTRIBUTION", "MODULE", "Account", "LineEmulator", "WebhookResult", "emulator"]

DISTRIBUTION = "broadcaster-line-emulator"
MODULE = "broadcaster_line_emulator"


def emulator() -> ModuleType:
    """The emulator's package; `DemoFailed`, saying what to install, when it is missing."""
    try:
        return importlib.import_module(MODULE)
    except ModuleNotFoundError as e:
        if e.name != MODULE:
            raise  # installed, but something it needs is not
        raise DemoFailed(
            f"the demo needs the {DISTRIBUTION} package (the LINE emulator plays the LINE "
            "Platform): install it beside broadcaster"
        ) from None
