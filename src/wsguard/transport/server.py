"""A uvicorn ``Server`` that drains the app before it shuts down.

Stock uvicorn, on SIGTERM or SIGINT, closes its listeners and sends 1012 to every WebSocket at
once, then re-raises the signal so that the process dies by it. wsguard's contract is the other
way round: the app drains first (``/readyz`` and new upgrades answer 503, open connections are
closed with 1001 in batches) while the server keeps listening, so that a client that reconnects
during the drain gets a 503 with ``Retry-After`` rather than a refused connection; then the
normal shutdown runs and the process exits 0. A second signal during the drain cuts it short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import FrameType

import uvicorn

from wsguard.transport.descriptors import LISTEN_QUEUE, widen_listen_queue

logger = logging.getLogger("wsguard.transport")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Drain = Callable[[], Awaitable[None]]


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop runs this server (``--loop auto`` picks one)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


class WSGuardServer(uvicorn.Server):
    """``uvicorn.Server`` with ``drain`` awaited on the first SIGTERM or SIGINT.

    ``on_signal`` runs in the signal handler itself, before the next request is read, so that
    readiness turns 503 the moment the signal arrives rather than on uvicorn's next tick.
    """

    def __init__(
        self, config: uvicorn.Config, drain: Drain, on_signal: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._on_signal = on_signal
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        """One line with the addresses clients use (the real port when 0 was asked for)."""
        for listener in listeners:
            address = listener.getsockname()
            if not isinstance(address, tuple):
                logger.info("listening on %s", address)
                continue
            host = address[0] if ":" not in address[0] else f"[{address[0]}]"
            scheme = "https" if self.config.ssl else "http"
            logger.info(
                "listening on %s://%s:%d and %s://%s:%d on %s with %s (CTRL+C drains and stops)",
                scheme,
                host,
                address[1],
                "wss" if self.config.ssl else "ws",
                host,
                address[1],
                event_loop_name(),
                getattr(self.config.http, "parser_name", "uvicorn's own HTTP parser"),
            )

    @property
    def draining(self) -> bool:
        """True from the first signal until the normal shutdown starts."""
        return self._drain_requested and not self.should_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started or self.should_exit:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True
        elif not self._drain_requested:
            logger.info("Received %s: draining", signal.Signals(sig).name)
            self._drain_requested = True
            if self._on_signal is not None:
                self._on_signal()
        else:
            logger.warning("Received %s during the drain: shutting down now", signal.Signals(sig).name)
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_requested and self._drain_task is None and not self.should_exit:
            self._drain_task = asyncio.create_task(self._run_drain(), name="wsguard-drain")
        should_exit = await super().on_tick(counter)
        if should_exit and self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        return should_exit

    async def _run_drain(self) -> None:
        try:
            await self._drain()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("The drain failed; shutting down without it")
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        widen_listen_queue((listener for server in self.servers for listener in server.sockets), LISTEN_QUEUE)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT and SIGTERM, and do not re-raise them afterwards: the exit status is 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
