"""wsguard: per-user isolated WebSocket sessions that cannot leak.

The names below are imported on first use, so that ``import wsguard.client`` on a machine with
only ``websockets`` installed does not load the server (Starlette, uvicorn, PyJWT, Prometheus).
``__version__`` is the installed distribution's version, read from its metadata on first use.
"""

from typing import TYPE_CHECKING

from wsguard.lazy import lazy_exports

if TYPE_CHECKING:
    from wsguard.context import ConnectionContext, RunContext
    from wsguard.runtime.commands import CommandHooks
    from wsguard.runtime.hub import EventTooLarge, Hub
    from wsguard.server.auth import Identity, Unauthorized
    from wsguard.server.guard import WSGuard, create_app
    from wsguard.settings import LimitPolicy, Settings
    from wsguard.version import __version__ as __version__

_EXPORTS = {
    "__version__": "wsguard.version",
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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
