"""Raw sockets against a real server: request heads, unfinished ones, and what came back."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

from wsguard.processes import ServerProcess, eventually
from wsguard.processes.clients import receive, send

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
"""An upgrade request's head without its final empty line."""
UNFINISHED_HEAD = b"GET /ws HTTP/1.1\r\nHost: x\r\n"
SERVE = [sys.executable, "-m", "wsguard", "serve"]


def serve_command() -> list[str]:
    """``python -m wsguard serve``, or ``WSGUARD_SERVE_COMMAND`` (to see these tests fail
    against another build, as ``transport_harness.wsguard_server`` does)."""
    override = os.environ.get("WSGUARD_SERVE_COMMAND")
    return shlex.split(override) if override else SERVE


def guarded_server_on_stock_http(*flags: str) -> ServerProcess:
    """``stock_http_app.py``: uvicorn's h11 protocol with wsguard's WebSocket protocol class
    (with ``--guarded-http``, wsguard's whole transport)."""
    app = Path(__file__).with_name("stock_http_app.py")
    root = Path(__file__).resolve().parents[2]
    return ServerProcess(*flags, command=[sys.executable, str(app)], env={"PYTHONPATH": str(root / "src")})


def edge_server(
    *flags: str,
    nofile: str | None = None,
    tls_ca: str | None = None,
    env: dict[str, str] | None = None,
    log_path: str | None = None,
) -> ServerProcess:
    """``wsguard serve --dev`` with ``flags``; under ``prlimit --nofile=<nofile>`` if given."""
    command = serve_command()
    if nofile is not None:
        command = ["prlimit", f"--nofile={nofile}", *command]
    return ServerProcess(*flags, command=command, tls_ca=tls_ca, env=env, log_path=log_path)


@dataclass(frozen=True)
class Answer:
    """What a raw exchange got back: the bytes, whether the server closed, and when."""

    data: bytes
    closed: bool
    seconds: float

    @property
    def status(self) -> int | None:
        parts = self.data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None


def exchange(port: int, request: bytes, *, timeout: float = 1.0, source: str = "127.0.0.1") -> Answer:
    """Send ``request`` and read until the server closes or ``timeout`` passes."""
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as sock:
        started = time.monotonic()
        sock.sendall(request)
        return read_until_closed(sock, started, timeout)


def read_until_closed(sock: socket.socket, started: float, timeout: float) -> Answer:
    data = b""
    deadline = started + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return Answer(data, True, time.monotonic() - started)
        if not chunk:
            return Answer(data, True, time.monotonic() - started)
        data += chunk
    return Answer(data, False, time.monotonic() - started)


def open_heads(port: int, count: int, *, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections that each send an unfinished request head, then stay silent."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(UNFINISHED_HEAD)
        sockets.append(sock)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def descriptors(server: ServerProcess) -> int:
    count: int = psutil.Process(server.pid).num_fds()
    return count


def held_from(server: ServerProcess, sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server holds a connection for now."""
    ports = {sock.getsockname()[1] for sock in sockets}
    connections = psutil.Process(server.pid).net_connections(kind="tcp")
    return sum(1 for connection in connections if connection.raddr and connection.raddr.port in ports)


def back_to(server: ServerProcess, baseline: int, timeout: float) -> int:
    """Wait until the server holds no more descriptors than ``baseline``."""
    return eventually(
        lambda: descriptors(server),
        lambda count: count <= baseline,
        timeout=timeout,
        what=f"the server's descriptors back to {baseline}",
    )


async def connect_as(
    server: ServerProcess, user: str, *, source: str = "127.0.0.1", token: str | None = None
) -> ClientConnection:
    """A real client from ``source`` (any 127.0.0.0/8 address is this machine), after its welcome."""
    client = await connect(
        server.ws_url,
        additional_headers={"Authorization": f"Bearer {token or server.token(user)}"},
        local_addr=(source, 0),
        ssl=server.ssl_context,
        open_timeout=10,
        close_timeout=1,
    )
    welcome = await receive(client)
    assert welcome["type"] == "welcome", welcome
    return client


async def stream_a_run(client: ClientConnection) -> list[str]:
    """Start a demo run on a thread and return the names of its events, to ``agent_completed``."""
    await send(client, type="subscribe", thread_id="t1")
    assert (await receive(client))["type"] == "subscribed"
    await send(client, type="message", thread_id="t1", text="hi")
    names: list[str] = []
    while not names or names[-1] != "agent_completed":
        frame = await receive(client, timeout=10.0)
        assert frame["type"] == "event", frame
        names.append(frame["event"])
    return names
