"""The load client: one way to connect to, publish to and count every server under test.

Every server gets the same client (the ``websockets`` asyncio client, with httpx for HTTP): a
:class:`Target` says how to reach its server, a :class:`Link` reads events in its server's
framing, and a publisher sends one event to every connection of a user. wsguard's Server-Sent
Events are read off a plain asyncio TCP connection (:class:`StreamLink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wsguard.leaktest.verdict import histogram_buckets
from wsguard.processes import IDLE_COUNTS, ServerProcess, parse_metrics

CONNECT_BATCH = 250
EVENT = "bench"

Counts = dict[str, float]
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Publish one event with this data to every connection of a user; returns once the server took it."""

OPEN_FDS = "open_fds"
BASELINE_COUNTS = frozenset({"tasks", "wsguard_tasks_active", "wsguard_http_pending_connections", OPEN_FDS})
"""Counts that return to what they were before the load, rather than to 0."""


OPEN_TIMEOUT = 10.0
"""Seconds a client waits for the opening handshake, unless its target says otherwise."""


async def _connect(url: str, headers: dict[str, str] | None, open_timeout: float) -> ClientConnection:
    return await connect(
        url,
        additional_headers=headers,
        ping_interval=None,
        compression=None,
        close_timeout=2,
        open_timeout=open_timeout,
    )


def _text(message: str | bytes) -> str:
    return message if isinstance(message, str) else message.decode()


def _reset(transport: asyncio.WriteTransport) -> None:
    """Drop the TCP connection with a reset (``SO_LINGER`` 0): no close handshake, not even a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Link(ABC):
    """One client connection to a server under test."""

    @abstractmethod
    async def next_event(self) -> dict[str, Any]:
        """The data of the next event this connection receives."""

    @abstractmethod
    async def close(self) -> None:
        """Close the way the protocol's client does when it leaves."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the TCP connection with a reset: no close handshake, not even a FIN."""


class WebSocketLink(Link):
    """A connection of the ``websockets`` asyncio client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def close(self) -> None:
        """Close with a close handshake."""
        await self.ws.close()

    def abort(self) -> None:
        _reset(self.ws.transport)


class PlainLink(WebSocketLink):
    """wsguard's, bare Starlette's and bare websockets' frames: one JSON object with a ``type`` each."""

    @classmethod
    async def open(
        cls, url: str, headers: dict[str, str] | None = None, open_timeout: float = OPEN_TIMEOUT
    ) -> PlainLink:
        ws = await _connect(url, headers, open_timeout)
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected a welcome frame, got {welcome!r}")
        return cls(ws)

    async def next_event(self) -> dict[str, Any]:
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["type"] == "event":
                data: dict[str, Any] = frame["data"]
                return data


class SocketIOLink(WebSocketLink):
    """Engine.IO v4 and Socket.IO v5 framed by hand over the same WebSocket client.

    The server opens with ``0{...}``; ``40`` joins the default namespace and ``40{"sid": ...}``
    acknowledges it (the welcome); an event is ``42["name", data]``. Engine.IO drops a client that
    leaves its pings (``2``) unanswered, so a task of the link answers each with ``3`` while the
    connection stays idle, as a Socket.IO client does.
    """

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws)
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, open_timeout: float = OPEN_TIMEOUT) -> SocketIOLink:
        ws = await _connect(url, None, open_timeout)
        opening = _text(await ws.recv())
        if not opening.startswith("0{"):
            raise RuntimeError(f"expected an Engine.IO open packet, got {opening!r}")
        await ws.send("40")
        acknowledgement = _text(await ws.recv())
        if not acknowledgement.startswith("40"):
            raise RuntimeError(f"expected a Socket.IO connect packet, got {acknowledgement!r}")
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                text = _text(message)
                if text == "2":
                    await self.ws.send("3")
                elif text.startswith("42"):
                    _name, data = json.loads(text[2:])
                    self._events.put_nowait(data)
        except ConnectionClosed:
            pass
        finally:
            self._events.put_nowait(None)

    async def next_event(self) -> dict[str, Any]:
        data = await self._events.get()
        if data is None:
            raise ConnectionError("the Socket.IO connection closed")
        return data

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class StreamLink(Link):
    """wsguard's Server-Sent Events (``GET /sse``) over a bare asyncio TCP connection.

    Cheaper per connection than an httpx stream: one load process holds 10,000 streams, on the
    same two CPUs as the server. The response body is HTTP/1.1 chunked; each message is one
    frame of the WebSocket protocol on a ``data:`` line (docs/protocol.md section 2), the first
    the ``welcome``.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._body = b""
        """Bytes of the body after the last whole message."""

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, headers: dict[str, str], open_timeout: float = OPEN_TIMEOUT
    ) -> StreamLink:
        """A stream whose ``welcome`` arrived; RuntimeError if the server answered otherwise."""
        async with asyncio.timeout(open_timeout):
            reader, writer = await asyncio.open_connection(host, port)
            link = cls(reader, writer)
            try:
                await link._request(host, port, path, headers)
                welcome = await link._frame()
            except BaseException:
                writer.transport.abort()
                raise
        if welcome.get("type") != "welcome":
            link.abort()
            raise RuntimeError(f"expected a welcome message, got {welcome!r}")
        return link

    async def _request(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        """Send the GET and read the response head, which must be a chunked 200."""
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status, *fields = head.split("\r\n")
        if status.split(" ", 2)[1:2] != ["200"]:
            raise RuntimeError(f"stream refused: {status}")
        if not any(field.lower().replace(" ", "") == "transfer-encoding:chunked" for field in fields):
            raise RuntimeError(f"expected a chunked body: {head!r}")

    async def _chunk(self) -> bytes:
        """The next chunk of the body; ConnectionError once it ends."""
        size_line = await self._reader.readline()
        if not size_line:
            raise ConnectionError("the stream's connection closed")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            raise ConnectionError("the stream ended")
        return (await self._reader.readexactly(size + 2))[:-2]

    async def _frame(self) -> dict[str, Any]:
        """The frame of the next message with a ``data:`` line (comments, the heartbeat, skipped)."""
        while True:
            while b"\n\n" not in self._body:
                self._body += await self._chunk()
            message, _, self._body = self._body.partition(b"\n\n")
            for line in message.split(b"\n"):
                if line.startswith(b"data:"):
                    frame: dict[str, Any] = json.loads(line[5:])
                    return frame

    async def next_event(self) -> dict[str, Any]:
        while True:
            frame = await self._frame()
            if frame["type"] == "event":
                data: dict[str, Any] = frame["data"]
                return data
            if frame["type"] == "close":
                raise ConnectionError(f"the server closed the stream: {frame!r}")

    async def close(self) -> None:
        """Close the TCP connection (a FIN): a stream has no close handshake."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        _reset(self._writer.transport)


@contextlib.asynccontextmanager
async def http_publisher(
    base_url: str, path: str, headers: dict[str, str], concurrency: int
) -> AsyncIterator[Publish]:
    """Publish with ``POST path``, over at most ``concurrency`` kept-alive HTTP connections."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def publish(user_id: str, data: dict[str, Any]) -> None:
            body = {"user_id": user_id, "thread_id": None, "event": EVENT, "data": data}
            response = await http.post(path, json=body, headers=headers)
            response.raise_for_status()

        yield publish


class Target(ABC):
    """One server under test: how a client connects, publishes, and reads what the server holds."""

    tasks_key = "tasks"
    """The key of :meth:`counts` that is the server's number of asyncio tasks."""

    def __init__(self, name: str, server: ServerProcess) -> None:
        self.name = name
        self.server = server
        self.fewest_tasks = math.inf
        """The fewest asyncio tasks :meth:`counts` found so far: the server at rest."""
        self.open_timeout = OPEN_TIMEOUT
        """Seconds a client waits for the opening handshake (a traced server is much slower)."""
        self.rest_rss: int | None = None
        """The server's resident memory at rest, after its first connection came and went."""

    def prepare(self, user_ids: Iterable[str]) -> None:
        """Whatever connecting as these users needs beforehand, done outside the timed part."""
        return None

    @abstractmethod
    async def open(self, user_id: str) -> Link:
        """A connection of ``user_id``, once the server's welcome arrived."""

    @abstractmethod
    def publisher(self, concurrency: int) -> AbstractAsyncContextManager[Publish]:
        """A way to publish user-level events, ``concurrency`` at a time."""

    @abstractmethod
    async def held(self, http: httpx.AsyncClient) -> Counts:
        """The server's own counts of what it holds (``http`` is a client of its base URL)."""

    async def counts(self, http: httpx.AsyncClient) -> Counts:
        """:meth:`held` and the process's open file descriptors."""
        counts = {**await self.held(http), OPEN_FDS: self.open_fds()}
        self.fewest_tasks = min(self.fewest_tasks, counts[self.tasks_key])
        return counts

    def cleanup_buckets(self) -> dict[float, float] | None:
        """The cumulative buckets of the server's cleanup-duration histogram; None without one."""
        return None

    def rss(self) -> int:
        return int(psutil.Process(self.server.pid).memory_info().rss)

    def open_fds(self) -> int:
        return int(psutil.Process(self.server.pid).num_fds())

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far, user and system."""
        times = psutil.Process(self.server.pid).cpu_times()
        return float(times.user + times.system)

    def other_cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of what else shares the machine with the server and the load client,
        by name (a server's workers, its Redis); none here."""
        return {}


class StatsTarget(Target):
    """A peer server that reports what it holds as JSON on ``GET /stats``."""

    async def held(self, http: httpx.AsyncClient) -> Counts:
        response = await http.get("/stats")
        response.raise_for_status()
        return {key: float(value) for key, value in response.json().items()}


class StarletteTarget(StatsTarget):
    """bench/bare_server.py: ``/ws?user=``, ``POST /publish``."""

    async def open(self, user_id: str) -> Link:
        return await PlainLink.open(f"{self.server.ws_url}?user={user_id}", open_timeout=self.open_timeout)

    def publisher(self, concurrency: int) -> AbstractAsyncContextManager[Publish]:
        return http_publisher(self.server.base_url, "/publish", {}, concurrency)


class WebsocketsTarget(StarletteTarget):
    """bench/websockets_server.py and sansio_server.py: connect like bare Starlette, ``POST /publish``
    on their second port."""

    def __init__(self, name: str, server: ServerProcess, publish_port: int) -> None:
        super().__init__(name, server)
        self.publish_url = f"http://{server.host}:{publish_port}"

    def publisher(self, concurrency: int) -> AbstractAsyncContextManager[Publish]:
        return http_publisher(self.publish_url, "/publish", {}, concurrency)


class SocketIOTarget(StatsTarget):
    """bench/socketio_server.py: Socket.IO's WebSocket transport, ``POST /publish`` to the user's room."""

    async def open(self, user_id: str) -> Link:
        url = self.server.ws_url.removesuffix("/ws")
        return await SocketIOLink.open(
            f"{url}/socket.io/?EIO=4&transport=websocket&user={user_id}", self.open_timeout
        )

    def publisher(self, concurrency: int) -> AbstractAsyncContextManager[Publish]:
        return http_publisher(self.server.base_url, "/publish", {}, concurrency)


WSGUARD_PENDING = "wsguard_http_pending_connections"


class WsguardTarget(Target):
    """``wsguard serve --dev``: a JWT per user, ``POST /api/publish`` as an admin, ``/metrics``."""

    tasks_key = "wsguard_tasks_active"

    def __init__(self, name: str, server: ServerProcess) -> None:
        super().__init__(name, server)
        self.tokens: dict[str, str] = {}
        self.admin: dict[str, str] = {}

    def prepare(self, user_ids: Iterable[str]) -> None:
        """A token for each user, and one for publishing as an admin."""
        if not self.admin:
            self.admin = self.server.auth("bench-admin", admin=True)
        for user_id in user_ids:
            if user_id not in self.tokens:
                self.tokens[user_id] = self.server.token(user_id)

    async def open(self, user_id: str) -> Link:
        self.prepare([user_id])
        headers = {"Authorization": f"Bearer {self.tokens[user_id]}"}
        return await PlainLink.open(self.server.ws_url, headers, self.open_timeout)

    def publisher(self, concurrency: int) -> AbstractAsyncContextManager[Publish]:
        self.prepare([])
        return http_publisher(self.server.base_url, "/api/publish", self.admin, concurrency)

    async def held(self, http: httpx.AsyncClient) -> Counts:
        """The counts that are 0 when nothing leaked, the upgrades pending, and the asyncio tasks."""
        response = await http.get("/metrics")
        response.raise_for_status()
        samples = parse_metrics(response.text)
        names = (*IDLE_COUNTS, WSGUARD_PENDING, self.tasks_key)
        return {name: samples[name] for name in names if name in samples}

    def cleanup_buckets(self) -> dict[float, float]:
        return histogram_buckets(self.server.metrics(), "wsguard_cleanup_seconds")


class WsguardStreamTarget(WsguardTarget):
    """The same ``wsguard serve --dev``, its clients on Server-Sent Events (``GET /sse``) instead."""

    async def open(self, user_id: str) -> Link:
        self.prepare([user_id])
        headers = {"Authorization": f"Bearer {self.tokens[user_id]}"}
        return await StreamLink.open(self.server.host, self.server.port, "/sse", headers, self.open_timeout)


def released(counts: Counts) -> bool:
    """Every count of connections, users and records at 0."""
    return all(value == 0 for key, value in counts.items() if key not in BASELINE_COUNTS)


def settled(counts: Counts, baseline: Counts) -> bool:
    """:func:`released`, and the tasks and descriptors no more than in ``baseline`` (before the load)."""
    return released(counts) and all(
        value <= baseline[key] for key, value in counts.items() if key in BASELINE_COUNTS and key in baseline
    )


async def open_many(target: Target, user_of: Callable[[int], str], count: int) -> list[Link]:
    """``count`` connections, ``CONNECT_BATCH`` at a time; connection ``i`` belongs to ``user_of(i)``."""
    target.prepare(dict.fromkeys(user_of(index) for index in range(count)))
    links: list[Link] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = range(start, min(count, start + CONNECT_BATCH))
        links += await asyncio.gather(*(target.open(user_of(index)) for index in batch))
    return links


async def close_all(links: list[Link]) -> None:
    for start in range(0, len(links), CONNECT_BATCH):
        await asyncio.gather(*(link.close() for link in links[start : start + CONNECT_BATCH]))
