"""Serve an app on uvicorn through wsguard's own transport, draining before shutdown."""

from starlette.types import ASGIApp

from wsguard.settings import Settings
from wsguard.transport import Drain, TransportOptions, run


def run_server(app: ASGIApp, settings: Settings, drain: Drain) -> int:
    """Serve until SIGTERM or SIGINT; ``drain`` (the guard's) runs before uvicorn shuts down."""
    run(app, TransportOptions.from_settings(settings), drain)
    return 0
