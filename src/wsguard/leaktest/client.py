"""The harness's side of the wire: real clients over either transport, and the HTTP API, as
docs/protocol.md says.

A :class:`Tab` is a WebSocket (``/ws``) or an event stream (``GET /sse``, commands by POST); it
reads all the time (so a socket answers the server's pings and neither trips flow control) and
records every frame; it can leave cleanly, drop TCP, or stall. A reply is matched to its request
by the ``ref`` the request carried (docs/protocol.md section 3) and by its position after the
request, never by comparing frames: two replies may be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode

from wsguard import close
from wsguard.errors import WSGuardError
from wsguard.processes.streams import StreamClient, StreamRefused

Frame = dict[str, Any]
_refs = itertools.count(1)

WEBSOCKET = "websocket"
SSE = "sse"
TRANSPORTS = (WEBSOCKET, SSE)
"""What a tab connects over: the values of ``wsguard_transport_connections{transport}``."""
ACCEPTED = 202


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
    """The HTTP endpoints the scenarios use, with tokens from the token endpoint, cached per user,
    and the transport that :func:`open_tab` connects over."""

    def __init__(
        self,
        target: Target,
        client: httpx.AsyncClient,
        tokens: dict[tuple[str, bool], str] | None = None,
        *,
        transport: str = WEBSOCKET,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}")
        self.target = target
        self.http = client
        self.transport = transport
        self._tokens = {} if tokens is None else tokens
        self._instances = itertools.cycle(target.instances)
        self.stream_positions: dict[str, StreamPosition] = {}
        """Session id -> where its latest stream stood, for a stream tab that resumes it."""

    def next_instance(self) -> Target:
        """The next instance, round-robin (always the same for one server)."""
        return next(self._instances)

    def next_ws_url(self) -> str:
        """The WebSocket URL of the next instance, round-robin."""
        return self.next_instance().ws_url

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
    """The server answered a command with an ``error`` frame (or, on a stream, refused its POST)."""


class Refused(WSGuardError):
    """The connection was refused with an HTTP status (docs/protocol.md section 2)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"connection refused with HTTP {status}")
        self.status = status


class Tab(ABC):
    """One open connection, as a browser tab would hold it: a WebSocket (:class:`SocketTab`) or an
    event stream (:class:`StreamTab`) behind one interface, so that every scenario runs over both.

    A tab reads all the time and records every frame, until it leaves cleanly (:meth:`close`),
    drops TCP (:meth:`drop`) or stops reading (:meth:`stall`). ``close_code`` is how it ended:
    the server's close code (a socket's close frame, a stream's last ``close`` message), 1000
    when the tab left itself, 1006 when the connection just ended.
    """

    transport: ClassVar[str]

    def __init__(self, name: str, welcome: Frame, opened_at: float) -> None:
        self.name = name
        self.welcome = welcome
        self.opened_at = opened_at
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self.stalled = False
        self._reader: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._arrived = asyncio.Event()

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
    @abstractmethod
    def last_alive_at(self) -> float | None:
        """When the server last heard from this tab's heartbeat: its last pong, or its opening;
        None on a transport whose heartbeat the client does not answer (a stream's comments),
        where the server learns that a reader stalled only from its own writes backing up."""

    def describe_close(self) -> str:
        """How and when (seconds after it opened) the tab was closed, for a failure message."""
        if self.closed_at is None:
            return "open"
        reason = f" {self.close_reason}" if self.close_reason else ""
        return f"closed {self.close_code}{reason} {self.closed_at - self.opened_at:.2f} s after it opened"

    def start_reading(self) -> None:
        self._reader = asyncio.create_task(self._read(), name=f"leaktest-read-{self.name}")

    @abstractmethod
    async def _read(self) -> None:
        """Record every frame with :meth:`_record` until the connection ends, then :meth:`_ended`."""

    def _record(self, frame: Frame) -> None:
        self.frames.append(frame)
        self._arrived.set()

    def _ended(self, code: int | None, reason: str) -> None:
        """The connection is over; the first call says how."""
        if self._closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason
        self.closed_at = time.monotonic()
        self._closed.set()
        self._arrived.set()

    @abstractmethod
    async def send(self, frame: Frame) -> None:
        """Send one command frame."""

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
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()

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

    @abstractmethod
    async def close(self) -> None:
        """Leave cleanly, and wait until the connection is gone."""

    @abstractmethod
    def drop(self) -> None:
        """Drop TCP without a goodbye, as a vanished laptop would; :meth:`wait_closed` follows it."""

    @abstractmethod
    def stall(self) -> None:
        """Stop reading, keeping the connection open: its buffers fill, and the server must find
        out by itself."""

    async def wait_closed(self, timeout: float) -> int | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._closed.wait()
        return self.close_code

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()


class SocketTab(Tab):
    """A tab over ``/ws``: a WebSocket that answers the server's pings while it reads."""

    transport = WEBSOCKET

    def __init__(self, name: str, ws: ClientConnection, welcome: Frame, opened_at: float) -> None:
        super().__init__(name, welcome, opened_at)
        self.ws = ws

    @property
    def last_alive_at(self) -> float:
        answered = getattr(self.ws, "last_ping_answered_at", None)
        return self.opened_at if answered is None else max(answered, self.opened_at)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self._record(json.loads(message))
        except ConnectionClosed:
            pass
        finally:
            self._ended(self.ws.close_code, self.ws.close_reason or "")

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        """Leave with a close frame."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()
        await self.wait_closed(2.0)

    def drop(self) -> None:
        self.ws.transport.abort()

    def stall(self) -> None:
        """Stop reading: the kernel buffers fill and the server's pings go unanswered."""
        self.stalled = True
        self.ws.transport.pause_reading()


@dataclass(frozen=True)
class StreamPosition:
    """Where a session's latest stream stood: its last ``id:`` (the ``Last-Event-ID`` a reconnect
    sends) and the threads that id holds, which the server subscribes again on a resume."""

    last_id: str
    threads: frozenset[str]


class StreamTab(Tab):
    """A tab over ``/sse``: a ``GET /sse`` response read message by message, commands by POST.

    A stream carries nothing from the client, so the server learns of a client that went only
    from its TCP connection, and of one that stopped reading only once its writes back up. The
    tab keeps its session's position (:class:`StreamPosition`) in ``positions``, so that a tab
    that resumes the session reconnects from it, as ``EventSource`` does with ``Last-Event-ID``.
    """

    transport = SSE

    def __init__(
        self,
        name: str,
        stream: StreamClient,
        opened_at: float,
        positions: dict[str, StreamPosition],
        resumed: frozenset[str] = frozenset(),
        receive_buffer: int | None = None,
    ) -> None:
        """``receive_buffer``: what the stream's receive buffer shrinks to when the tab stalls."""
        super().__init__(name, stream.welcome, opened_at)
        self.stream = stream
        self._receive_buffer = receive_buffer
        self._positions = positions
        self._threads: set[str] = set()
        """The threads the stream's own position holds, as its frames moved it."""
        self._resumed = set(resumed)
        """Threads that the ``Last-Event-ID`` this stream opened with subscribed again."""
        self._reading = asyncio.Event()
        self._reading.set()
        self._server_close: tuple[int, str] | None = None
        """The code and reason of the stream's last ``close`` message, once it came."""
        self._finishing = False
        """The stream ended and the reader is letting its connections go: not to be cancelled."""
        self._dropping = False

    @property
    def last_alive_at(self) -> None:
        return None

    async def _read(self) -> None:
        reason = ""
        try:
            while True:
                await self._reading.wait()
                frame = await self.stream.receive(None)
                if frame.get("type") == "close":
                    self._server_close = (int(frame["code"]), str(frame.get("reason") or ""))
                    continue
                self._follow(frame)
                self._record(frame)
        except (StopAsyncIteration, httpx.HTTPError):
            pass
        except Exception as error:  # a message that is no frame: the tab ends, saying so
            reason = f"{type(error).__name__}: {error}"
        # The response is over: let its connections go rather than keep them alive.
        self._finishing = True
        await self.stream.close()
        self._ended(*(self._server_close or (close.ABNORMAL, reason)))

    def _follow(self, frame: Frame) -> None:
        """Keep the session's position: the last ``id:`` and the threads it holds."""
        thread_id = frame.get("thread_id")
        if frame.get("type") == "subscribed" and isinstance(thread_id, str):
            self._threads.add(thread_id)
        elif frame.get("type") == "unsubscribed" and isinstance(thread_id, str):
            self._threads.discard(thread_id)
        if self.stream.last_id is not None:
            self._positions[self.session_id] = StreamPosition(self.stream.last_id, frozenset(self._threads))

    async def send(self, frame: Frame) -> None:
        """POST the command to the stream's ``commands`` path; its reply comes on the stream."""
        if self.is_closed:
            raise RequestRefused(
                f"{self.name}: {frame.get('type')} on a stream that ended: {self.describe_close()}"
            )
        response = await self.stream.command(**frame)
        if response.status_code != ACCEPTED:
            raise RequestRefused(
                f"{self.name}: {frame.get('type')} answered HTTP {response.status_code}: {response.text}"
            )

    async def subscribe(
        self, thread_id: str, since: Mapping[str, Any] | None = None, timeout: float = 5.0
    ) -> Frame:
        """Subscribe, or, for a thread that the stream's ``Last-Event-ID`` already subscribed
        again from where the session stood, wait for that subscription's ``subscribed`` (after
        its replayed events): asking again would replay them twice."""
        if thread_id not in self._resumed:
            return await super().subscribe(thread_id, since, timeout)
        self._resumed.discard(thread_id)
        return await self.wait_for(
            lambda f: f.get("type") == "subscribed" and f.get("thread_id") == thread_id and "ref" not in f,
            timeout,
        )

    async def _stop_reading(self) -> None:
        """Stop the reader, or, once the stream ended, let it finish."""
        if self._reader is None or self._reader.done():
            return
        if not self._finishing:
            self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _leave(self, code: int) -> None:
        await self._stop_reading()
        if not self.is_closed:
            await self.stream.close()
            self._ended(*(self._server_close or (code, "")))

    async def close(self) -> None:
        """Leave: the response and its connection are closed (a stream has no goodbye of its own)."""
        await self._leave(close.NORMAL.code)
        await self.wait_closed(2.0)

    def drop(self) -> None:
        """Reset TCP, as a client that crashed leaves it: no end of the connection to read."""
        if self.is_closed or self._dropping:
            return
        self._dropping = True
        self.stream.reset_on_close()
        dropping = asyncio.create_task(self._leave(close.ABNORMAL), name=f"leaktest-drop-{self.name}")
        _DROPPING.add(dropping)
        dropping.add_done_callback(_DROPPING.discard)

    def stall(self) -> None:
        """Stop reading after the message being read: the receive buffer (shrunk now, not at
        the opening, so that a live stream reads at full speed) fills, then the server's send
        buffers, then its queue."""
        self.stalled = True
        if self._receive_buffer is not None:
            self.stream.limit_receive_buffer(self._receive_buffer)
        self._reading.clear()


_DROPPING: set[asyncio.Task[None]] = set()
"""Drops under way, held until done: a dropped tab may be forgotten at once."""


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
    """Connect as ``user_id`` over ``api.transport``, wait for ``welcome`` and start reading;
    :class:`Refused` on HTTP.

    ``resume`` is a session id to take over (a stream also reconnects from where the session's
    latest stream stood, with its ``Last-Event-ID``). ``receive_buffer`` shrinks the socket's
    receive buffer, so that a tab that stalls leaves the unsent bytes on the server rather than
    in the kernel.
    """
    if api.transport == SSE:
        return await _open_stream_tab(api, user_id, name, resume, timeout, receive_buffer)
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
    async with asyncio.timeout(timeout):
        first = json.loads(await ws.recv())
    if first.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"{name}: first frame is not welcome: {first!r}")
    tab = SocketTab(name, ws, first, opened_at)
    tab.start_reading()
    return tab


async def _open_stream_tab(
    api: Api, user_id: str, name: str, resume: str | None, timeout: float, receive_buffer: int | None
) -> StreamTab:
    position = None if resume is None else api.stream_positions.get(resume)
    try:
        stream = await StreamClient.open(
            api.next_instance().base_url,
            await api.token(user_id),
            resume=resume,
            last_event_id=None if position is None else position.last_id,
            timeout=timeout,
        )
    except StreamRefused as refused:
        raise Refused(refused.status) from refused
    resumed = frozenset() if position is None else position.threads
    tab = StreamTab(name, stream, time.monotonic(), api.stream_positions, resumed, receive_buffer)
    tab.start_reading()
    return tab


async def abandon_all(tabs: list[Tab]) -> None:
    """Drop every tab still open and wait for the readers to finish."""
    for tab in tabs:
        if not tab.is_closed:
            tab.drop()
    for tab in tabs:
        await tab.wait_closed(2.0)
