"""wsguard: per-user isolated WebSocket sessions that cannot leak.

The public names are imported on first use, so that a light submodule (``wsguard.probe``, which
any ASGI application may wrap itself in) loads none of the server's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsguard.context import ConnectionContext, RunContext
    from wsguard.runtime.commands import CommandHooks
    from wsguard.runtime.hub import EventTooLarge, Hub
    from wsguard.server.auth import Identity, Unauthorized
    from wsguard.server.guard import WSGuard, create_app
    from wsguard.settings import LimitPolicy, Settings

_HOMES = {
    "CommandHooks": "wsguard.runtime.commands",
    "ConnectionContext": "wsguard.context",
    "EventTooLarge": "wsguard.runtime.hub",
    "Hub": "wsguard.runtime.hub",
    "Identity": "wsguard.server.auth",
    "LimitPolicy": "wsguard.settings",
    "RunContext": "wsguard.context",
    "Settings": "wsguard.settings",
    "Unauthorized": "wsguard.server.auth",
    "WSGuard": "wsguard.server.guard",
    "create_app": "wsguard.server.guard",
}

__all__ = [
    "CommandHooks",
    "ConnectionContext",
    "EventTooLarge",
    "Hub",
    "Identity",
    "LimitPolicy",
    "RunContext",
    "Settings",
    "Unauthorized",
    "WSGuard",
    "create_app",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'wsguard' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
