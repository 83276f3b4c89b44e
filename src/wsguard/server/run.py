"""Serve an app on uvicorn through wsguard's own transport, draining before shutdown."""

import socket
from collections.abc import Callable

from starlette.types import ASGIApp

from wsguard.server.collector import tune_collector
from wsguard.settings import Settings
from wsguard.transport import Drain, TransportOptions, run


def run_server(
    app: ASGIApp,
    settings: Settings,
    drain: Drain,
    on_signal: Callable[[], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; ``drain`` (the guard's) runs before uvicorn shuts down.

    ``on_signal`` (the guard's ``stop_admitting``) runs in the signal handler itself;
    ``sockets``: listen on these (a worker's, bound by its parent). The garbage collector is
    tuned for a process that holds many connections (:mod:`wsguard.server.collector`).
    """
    tune_collector()
    run(app, TransportOptions.from_settings(settings), drain, sockets=sockets, on_signal=on_signal)
    return 0
