"""The harness's side of the wire: real WebSocket clients and the HTTP API, as docs/protocol.md says.

A :class:`Tab` reads its socket all the time (so it answers the server's pings and never trips
flow control) and records every frame; it can leave cleanly, drop TCP, or stall. A reply is
matched to its request by the ``ref`` the request carried (docs/protocol.md section 3) and by its
position after the request, never by comparing frames: two replies may be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode

from wsguard.errors import WSGuardError

Frame = dict[str, Any]
_refs = itertools.count(1)


class _AnsweringConnection(ClientConnection):
    """A client connection that remembers when it last answered the server's ping.

    ``websockets`` writes the pong as soon as the ping is parsed, before this hook runs, so the
    stamp is when the server could last have known that the client was alive.
    """

    last_ping_answered_at: float | None = None

    def process_event(self, event: Any) -> None:
        if isinstance(event, WireFrame) and event.opcode is Opcode.PING:
            self.last_ping_answered_at = time.monotonic()
        super().process_event(event)


@dataclass(frozen=True)
class Target:
    """Where a server is: its WebSocket URL, metrics URL, token endpoint and (if known) pid.

    A cluster is its first instance with the others as ``peers`` and the ``redis_url`` they
    share: tabs are spread over every instance, the HTTP API is the first one's.
    """

    ws_url: str
    metrics_url: str
    token_url: str
    pid: int | None = None
    peers: tuple[Target, ...] = ()
    redis_url: str | None = None

    @property
    def instances(self) -> tuple[Target, ...]:
        """Every instance, this one first."""
        return (self, *self.peers)

    @property
    def pids(self) -> tuple[int, ...] | None:
        """Every instance's pid, or None when any is unknown."""
        pids = tuple(t.pid for t in self.instances if t.pid is not None)
        return pids if len(pids) == len(self.instances) else None

    @property
    def base_url(self) -> str:
        """The HTTP origin of the WebSocket URL: ``ws://h:p/ws`` -> ``http://h:p``."""
        scheme, rest = self.ws_url.split("://", 1)
        host = rest.split("/", 1)[0]
        return f"{'https' if scheme == 'wss' else 'http'}://{host}"


class Api:
    """The HTTP endpoints the scenarios use, with tokens from the token endpoint, cached per user."""

    def __init__(
        self,
        target: Target,
        client: httpx.AsyncClient,
        tokens: dict[tuple[str, bool], str] | None = None,
    ) -> None:
        self.target = target
        self.http = client
        self._tokens = {} if tokens is None else tokens
        self._ws_urls = itertools.cycle([instance.ws_url for instance in target.instances])

    def next_ws_url(self) -> str:
        """The WebSocket URL of the next instance, round-robin (always the same for one server)."""
        return next(self._ws_urls)

    async def token(self, user_id: str, *, admin: bool = False) -> str:
        key = (user_id, admin)
        if key not in self._tokens:
            response = await self.http.post(self.target.token_url, json={"user_id": user_id, "admin": admin})
            response.raise_for_status()
            self._tokens[key] = str(response.json()["token"])
        return self._tokens[key]

    async def auth(self, user_id: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(user_id, admin=admin)}"}

    async def start_run(self, user_id: str, thread_id: str, text: str) -> dict[str, str]:
        """``POST /api/threads/{tid}/runs``: the ids the run was given."""
        response = await self.http.post(
            f"{self.target.base_url}/api/threads/{thread_id}/runs",
            json={"text": text},
            headers=await self.auth(user_id),
        )
        response.raise_for_status()
        body: dict[str, str] = response.json()
        return body

    async def publish(
        self, user_id: str, thread_id: str | None, event: str, data: Mapping[str, Any]
    ) -> int | None:
        """``POST /api/publish`` with an admin token: the event's offset."""
        response = await self.http.post(
            f"{self.target.base_url}/api/publish",
            json={"user_id": user_id, "thread_id": thread_id, "event": event, "data": dict(data)},
            headers=await self.auth("leaktest-admin", admin=True),
        )
        response.raise_for_status()
        offset = response.json().get("offset")
        return None if offset is None else int(offset)


class RequestRefused(WSGuardError):
    """The server answered a command with an ``error`` frame."""


class Refused(WSGuardError):
    """The upgrade was refused with an HTTP status (docs/protocol.md section 2)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status


@dataclass
class Tab:
    """One open connection, as a browser tab would hold it."""

    name: str
    ws: ClientConnection
    welcome: Frame
    opened_at: float
    frames: list[Frame] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed_at: float | None = None
    stalled: bool = False
    _reader: asyncio.Task[None] | None = None
    _closed: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def connection_id(self) -> str:
        return str(self.welcome["connection_id"])

    @property
    def session_id(self) -> str:
        return str(self.welcome["session_id"])

    @property
    def events(self) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == "event"]

    @property
    def last_alive_at(self) -> float:
        """When the server last heard from this tab's heartbeat: its last pong, or its opening."""
        answered = getattr(self.ws, "last_ping_answered_at", None)
        return self.opened_at if answered is None else max(answered, self.opened_at)

    def describe_close(self) -> str:
        """How and when (seconds after it opened) the tab was closed, for a failure message."""
        if self.closed_at is None:
            return "open"
        reason = f" {self.close_reason}" if self.close_reason else ""
        return f"closed {self.close_code}{reason} {self.closed_at - self.opened_at:.2f} s after it opened"

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"leaktest-read-{self.name}")

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            self.closed_at = time.monotonic()
            self._closed.set()
            self._arrived.set()

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, timeout: float, *, after: int = 0) -> Frame:
        """The first frame from position ``after`` on that matches ``predicate``, waiting up to
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = len(self.frames)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.is_set():
                raise TimeoutError(f"{self.name}: no matching frame; last: {self.frames[-3:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def subscribe(
        self, thread_id: str, since: Mapping[str, Any] | None = None, timeout: float = 5.0
    ) -> Frame:
        """Subscribe and wait for this request's ``subscribed`` (which follows any replayed events).

        The reply is the first ``subscribed`` that echoes this request's ``ref`` and arrived after
        the request was sent: an earlier reply to the same thread, even an identical one, is not it.
        """
        wanted = None if since is None else dict(since)
        return await self.request("subscribe", "subscribed", timeout, thread_id=thread_id, since=wanted)

    async def request(self, command: str, reply: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """Send ``command`` with a fresh ``ref`` and wait for the ``reply`` frame echoing it;
        :class:`RequestRefused` when the server answers that ``ref`` with ``error``."""
        ref = f"lt-{next(_refs)}"
        frame: Frame = {"type": command, "ref": ref}
        frame.update({name: value for name, value in fields.items() if value is not None})
        sent_at = len(self.frames)
        await self.send(frame)
        answer = await self.wait_for(
            lambda f: f.get("type") in (reply, "error") and f.get("ref") == ref, timeout, after=sent_at
        )
        if answer.get("type") == "error":
            raise RequestRefused(f"{self.name}: {command} refused: {answer}")
        return answer

    async def close(self) -> None:
        """Leave with a close frame."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()
        await self.wait_closed(2.0)

    def drop(self) -> None:
        """Drop TCP without a close frame, as a vanished laptop would."""
        self.ws.transport.abort()

    def stall(self) -> None:
        """Stop reading: the kernel buffers fill and the server's pings go unanswered."""
        self.stalled = True
        self.ws.transport.pause_reading()

    async def wait_closed(self, timeout: float) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout)
        return self.close_code

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()


async def _small_window_socket(url: str, receive_buffer: int) -> socket.socket:
    """A connected TCP socket whose small receive buffer stops absorbing once the reader stalls."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    info = (await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(info[0], info[1], info[2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, info[4])
    except BaseException:
        sock.close()
        raise
    return sock


async def open_tab(
    api: Api,
    user_id: str,
    name: str,
    *,
    resume: str | None = None,
    timeout: float = 5.0,
    receive_buffer: int | None = None,
) -> Tab:
    """Connect as ``user_id``, wait for ``welcome`` and start reading; :class:`Refused` on HTTP.

    ``receive_buffer`` shrinks the socket's receive buffer, so that a tab that stalls leaves
    the unsent bytes on the server rather than in the kernel.
    """
    url = api.next_ws_url()
    if resume is not None:
        url = f"{url}?{urlencode({'resume': resume})}"
    headers = await api.auth(user_id)
    sock = None if receive_buffer is None else await _small_window_socket(url, receive_buffer)
    try:
        ws = await connect(
            url,
            sock=sock,
            additional_headers=headers,
            open_timeout=timeout,
            close_timeout=1.0,
            create_connection=_AnsweringConnection,
            ping_interval=None,
            max_size=None,
            max_queue=None,
        )
    except InvalidStatus as refused:
        raise Refused(refused.response.status_code) from refused
    opened_at = time.monotonic()
    first = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    if first.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"{name}: first frame is not welcome: {first!r}")
    tab = Tab(name=name, ws=ws, welcome=first, opened_at=opened_at)
    tab.start_reading()
    return tab


async def abandon_all(tabs: list[Tab]) -> None:
    """Drop every tab still open and wait for the readers to finish."""
    for tab in tabs:
        if not tab.is_closed:
            tab.drop()
    for tab in tabs:
        await tab.wait_closed(2.0)
