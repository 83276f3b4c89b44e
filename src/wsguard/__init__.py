"""wsguard: per-user isolated WebSocket sessions that cannot leak."""

from wsguard.context import ConnectionContext, RunContext
from wsguard.runtime.commands import CommandHooks
from wsguard.runtime.hub import EventTooLarge, Hub
from wsguard.server.auth import Identity, Unauthorized
from wsguard.server.guard import WSGuard, create_app
from wsguard.settings import LimitPolicy, Settings

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
