"""``wsguard serve --workers N``: N server processes on one listening socket, sharing a Redis.

uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``) cannot be used as it is: it
pickles the ``Config`` with the app into each worker and runs a stock ``uvicorn.Server`` there,
so a worker would have neither wsguard's drain nor an app it can rebuild. Here the parent binds
the socket the way uvicorn does and starts each worker with multiprocessing's ``spawn`` (as
uvicorn does); a worker builds its own :class:`WSGuard` from the settings and serves the
inherited socket with wsguard's ``Server`` and protocol class. The parent forwards SIGTERM and
SIGINT, so every worker drains its own connections (1001, 503 on ``/readyz``) and exits 0. If a
worker dies, the parent drains and stops the others and exits 1, for the supervisor above it
(systemd, Kubernetes) to restart the whole.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from wsguard.settings import Settings

logger = logging.getLogger("wsguard.workers")

STARTUP_FAILURE = 3
"""The exit status when the port cannot be bound, as uvicorn exits when one process cannot start."""
PARENT_CHECK_INTERVAL = 1.0
"""Seconds between a worker's checks that its parent is alive (an orphan drains and exits)."""


def shared_settings(settings: Settings) -> Settings:
    """What every worker must agree on: with ``--dev`` and no key, one random secret, so that a
    token or session id issued by one worker is valid on every other."""
    if settings.dev and not settings.has_jwt_key:
        return replace(settings, jwt_secret=secrets.token_urlsafe(32))
    return settings


def bind(settings: Settings) -> socket.socket:
    """The listening socket every worker accepts on (bound once, by the parent).

    Its protocol is named: asyncio sets TCP_NODELAY only on sockets whose ``proto`` is
    IPPROTO_TCP, and an accepted socket takes the listener's; with 0, Nagle's algorithm would
    hold each small write behind the peer's delayed ACK, about 40 ms per HTTP response or frame.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.host, settings.port))
    listener.set_inheritable(True)
    return listener


def run_workers(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM or SIGINT; the exit status."""
    settings = shared_settings(settings)
    try:
        listener = bind(settings)
    except OSError as error:
        logger.error("cannot listen on %s:%s: %s", settings.host, settings.port, error)
        return STARTUP_FAILURE
    spawn = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = [
        spawn.Process(target=serve_worker, args=(settings, listener, os.getpid()), name=f"wsguard-worker-{n}")
        for n in range(settings.workers)
    ]
    stopping = threading.Event()

    def forward(sig: int, frame: FrameType | None) -> None:
        stopping.set()
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        if stopping.is_set():
            forward(signal.SIGTERM, None)
        running = list(workers)
        while running:
            wait([worker.sentinel for worker in running])
            for worker in [w for w in running if w.exitcode is not None]:
                running.remove(worker)
                if not stopping.is_set():
                    logger.error("%s exited with %s; stopping the others", worker.name, worker.exitcode)
                    forward(signal.SIGTERM, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    return 1 if failed else 0


def serve_worker(settings: Settings, listener: socket.socket, parent_pid: int) -> None:
    """One worker: its own process group (a terminal's Ctrl-C reaches the parent, which forwards
    it once), its own app, wsguard's transport on the inherited socket."""
    os.setpgid(0, 0)
    from wsguard.server.guard import WSGuard
    from wsguard.server.run import run_server

    threading.Thread(target=_drain_when_orphaned, args=(parent_pid,), daemon=True).start()
    guard = WSGuard(settings)
    run_server(guard.server_app(), settings, guard.drain, guard.stop_admitting, sockets=[listener])


def _drain_when_orphaned(parent_pid: int) -> None:
    """A worker whose parent died (SIGKILL) drains and exits instead of serving on alone."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_INTERVAL)
    os.kill(os.getpid(), signal.SIGTERM)
