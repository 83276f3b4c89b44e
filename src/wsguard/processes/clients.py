"""Real WebSocket clients for tests: connect as a user, read frames by type, drop the network."""

from __future__ import annotations

import asyncio
import json
import select
import socket
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]


async def open_socket(
    ws_url: str, token: str, *, ping_interval: float | None = 20.0, resume: str | None = None
) -> tuple[ClientConnection, Frame]:
    """Connect with a bearer token (resuming a session if given); return the socket and its ``welcome``."""
    url = f"{ws_url}?{urlencode({'resume': resume})}" if resume else ws_url
    socket = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        ping_interval=ping_interval,
        open_timeout=10,
        close_timeout=2,
    )
    welcome = await receive(socket)
    if welcome.get("type") != "welcome":
        await socket.close()
        raise AssertionError(f"expected welcome, got {welcome}")
    return socket, welcome


async def receive(socket: ClientConnection, timeout: float = 5.0) -> Frame:
    """The next frame, parsed; fails after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        text = await socket.recv(decode=True)
    frame: Frame = json.loads(text)
    return frame


async def send(socket: ClientConnection, **frame: Any) -> None:
    await socket.send(json.dumps(frame))


def drop(socket: ClientConnection) -> None:
    """Vanish without a close frame, as a dropped network does (TCP reset)."""
    socket.transport.abort()


def hung_up(sock: socket.socket) -> bool:
    """Whether the peer reset (or closed) the connection, seen without reading what it sent."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))
