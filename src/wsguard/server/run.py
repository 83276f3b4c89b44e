"""Serve an app on uvicorn through wsguard's own transport, draining before shutdown."""

from collections.abc import Callable

from starlette.types import ASGIApp

from wsguard.settings import Settings
from wsguard.transport import Drain, TransportOptions, run


def run_server(
    app: ASGIApp, settings: Settings, drain: Drain, on_signal: Callable[[], None] | None = None
) -> int:
    """Serve until SIGTERM or SIGINT; ``drain`` (the guard's) runs before uvicorn shuts down.

    ``on_signal`` (the guard's ``stop_admitting``) runs in the signal handler itself.
    """
    run(app, TransportOptions.from_settings(settings), drain, on_signal=on_signal)
    return 0
