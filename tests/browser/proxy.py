"""A TCP proxy of the tests' own between the browser and the server, to cut the network under it,
or to refuse WebSocket upgrades as some proxies, CDNs and mobile networks do."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``; :meth:`cut` resets every connection.

    While cut, new connections are reset at once, as a dropped network would refuse them.
    ``upstream_port`` may be changed between connections (a restarted server on a new port).

    With ``refuse_upgrades``, it reads each request's head first: a WebSocket upgrade is answered
    502 and closed (``upgrades_refused`` counts them), anything else is passed on with
    ``Connection: close``, so that every request comes on a connection of its own and is looked
    at; ``requests`` holds every request line seen.
    """

    def __init__(self, upstream_port: int, *, refuse_upgrades: bool = False) -> None:
        self.upstream_port = upstream_port
        self.refuse_upgrades = refuse_upgrades
        self.connections_seen = 0
        self.upgrades_refused = 0
        self.requests: list[str] = []
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cuttable-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def set_cut(self, cut: bool) -> None:
        """Cut (reset every open connection, refuse new ones) or restore the network."""
        done = threading.Event()

        def apply() -> None:
            self._cut = cut
            if cut:
                for writer in list(self._writers):
                    _reset(writer)
                self._writers.clear()
            done.set()

        self._loop.call_soon_threadsafe(apply)
        done.wait(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            _reset(writer)
            return
        self.connections_seen += 1
        head = b""
        if self.refuse_upgrades:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                writer.close()
                return
            self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            if _is_upgrade(head):
                self.upgrades_refused += 1
                with contextlib.suppress(OSError):
                    writer.write(REFUSED_UPGRADE)
                    await writer.drain()
                    writer.close()
                return
            head = _with_connection_close(head)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        if self._cut:  # cut while the upstream connection was being opened
            _reset(up_writer)
            _reset(writer)
            return
        pair = {writer, up_writer}
        self._writers |= pair
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._writers -= pair


REFUSED_UPGRADE = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
"""What a proxy that cannot carry WebSockets answers an upgrade with."""


def _header_lines(head: bytes) -> list[bytes]:
    return head.rstrip(b"\r\n").split(b"\r\n")[1:]


def _is_upgrade(head: bytes) -> bool:
    for line in _header_lines(head):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def _with_connection_close(head: bytes) -> bytes:
    """The request head with ``Connection: close`` in place of any ``Connection`` header."""
    request_line, *_ = head.split(b"\r\n", 1)
    kept = [line for line in _header_lines(head) if line.partition(b":")[0].strip().lower() != b"connection"]
    return b"\r\n".join([request_line, *kept, b"Connection: close"]) + b"\r\n\r\n"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped route or a crashed middlebox does."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
