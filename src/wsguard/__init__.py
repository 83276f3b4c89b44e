"""wsguard: per-user isolated WebSocket sessions that cannot leak.

The names below are imported on first use, so that ``import wsguard.client`` on a machine with
only ``websockets`` installed does not load the server (Starlette, uvicorn, PyJWT, Prometheus).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsguard.context import ConnectionContext, RunContext
    from wsguard.runtime.commands import CommandHooks
    from wsguard.runtime.hub import EventTooLarge, Hub
    from wsguard.server.auth import Identity, Unauthorized
    from wsguard.server.guard import WSGuard, create_app
    from wsguard.settings import LimitPolicy, Settings

_EXPORTS = {
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
    """Import an exported name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wsguard' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
