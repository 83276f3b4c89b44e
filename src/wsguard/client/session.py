"""The asyncio client: one live WebSocket at a time, reconnected, resumed and resubscribed.

The decisions live in :mod:`wsguard.client.reconnect` (reconnect or stop, and when) and
:mod:`wsguard.client.tracking` (what to resubscribe with, what is a duplicate); this module only
moves frames between the socket, those two, and the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from wsguard.client.history import fetch_history, http_base
from wsguard.client.inbox import Inbox, InboxClosed
from wsguard.client.outcome import ClientClosed, ClosedReason
from wsguard.client.reconnect import Decision, ReconnectPolicy, parse_retry_after
from wsguard.client.tracking import RecoveryFailed, ThreadTracker
from wsguard.close import ABNORMAL, GOING_AWAY, NORMAL
from wsguard.core.frames import (
    Event,
    Frame,
    MalformedFrame,
    Position,
    ServerError,
    Subscribed,
    ThreadHistory,
    UnknownFrame,
    Welcome,
    parse_frame,
)
from wsguard.errors import WSGuardError

logger = logging.getLogger("wsguard.client")

TokenSource = str | Callable[[], Awaitable[str]]
TicketProvider = Callable[[], Awaitable[str]]
Item = Event | RecoveryFailed


class CredentialsRefused(WSGuardError):
    """A token or ticket provider was refused over HTTP; ``status`` drives the reconnect rule."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"credentials refused with HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class CommandError(WSGuardError):
    """The server answered a command with an ``error`` frame."""

    def __init__(self, error: ServerError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class ConnectionLost(WSGuardError):
    """The connection dropped before the server answered; the client may already be reconnecting."""


@dataclass
class _Live:
    """The one open connection, and what was asked of it."""

    connection: ClientConnection
    welcome: Welcome
    drop_requested: bool = False
    replies: dict[int, asyncio.Future[Frame]] = field(default_factory=dict)
    unacknowledged: set[str] = field(default_factory=set)


class _Failure(Exception):
    """An attempt that failed, already translated into a decision and a reason."""

    def __init__(self, decision: Decision, reason: ClosedReason) -> None:
        super().__init__(decision.why)
        self.decision = decision
        self.reason = reason


class Client:
    """A wsguard connection that survives drops without losing or repeating events.

    Use it as ``async with connect(url, token=...) as client:``. ``token`` is a JWT (or an async
    callable returning a fresh one per connection), sent as ``Authorization: Bearer``;
    ``ticket_provider`` is an async callable returning a one-time ticket, called before every
    connection (a ticket is single-use). ``connect_options`` go to
    :func:`websockets.asyncio.client.connect` (``ping_interval``, ``close_timeout``, ...).

    Iterating yields :class:`Event` objects in the order the server
    published them, each once, and :class:`RecoveryFailed` notices when a thread must be
    reloaded. Iteration ends when the client stops; :attr:`closed_reason` says why.

    Counters for monitoring and tests: ``connections_opened``, ``failed_attempts`` (refused or
    failed reconnects), ``replayed_events`` (sent again by the server after a reconnect),
    ``duplicates_dropped``; ``last_disconnect`` says why the latest connection or attempt ended.
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource | None = None,
        ticket_provider: TicketProvider | None = None,
        reconnect: bool = True,
        policy: ReconnectPolicy | None = None,
        resume_session: str | None = None,
        max_pending: int = 1000,
        welcome_timeout: float = 10.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        if (token is None) == (ticket_provider is None):
            raise ValueError("pass exactly one of token= and ticket_provider=")
        self.url = url
        self._token = token
        self._ticket_provider = ticket_provider
        self._reconnect = reconnect
        self.policy = policy or ReconnectPolicy()
        self.tracker = ThreadTracker()
        self._welcome_timeout = welcome_timeout
        self._connect_options: dict[str, Any] = {"close_timeout": 2.0}
        self._connect_options.update(connect_options or {})
        self._inbox: Inbox[Item] = Inbox(max_pending)
        self._live: _Live | None = None
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._refs = itertools.count(1)
        self._subscribe_refs: dict[int, str] = {}
        self._subscribe_waiters: dict[str, list[asyncio.Future[Subscribed]]] = {}
        self.session_id: str | None = resume_session
        self.welcome: Welcome | None = None
        self.closed_reason: ClosedReason | None = None
        self.connections_opened = 0
        self.failed_attempts = 0
        self.last_disconnect: ClosedReason | None = None
        self.replayed_events = 0
        self.failure: Exception | None = None
        """The unexpected error the client stopped on, if any; iteration ends by raising it."""

    # ----------------------------------------------------------------- state the caller reads

    @property
    def connection_id(self) -> str | None:
        """The server's id of the current connection (``None`` between connections)."""
        return self._live.welcome.connection_id if self._live is not None else None

    @property
    def user_id(self) -> str | None:
        return self.welcome.user_id if self.welcome is not None else None

    @property
    def connected(self) -> bool:
        return self._live is not None

    @property
    def duplicates_dropped(self) -> int:
        """Events received twice (across connections) and not handed to the application."""
        return self.tracker.duplicates_dropped

    def position(self, thread_id: str) -> Position | None:
        """The epoch and last offset delivered for ``thread_id``; persist it to resume later."""
        return self.tracker.position(thread_id)

    # ----------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> Welcome:
        """Open the first connection; raise :class:`ClientClosed` if it fails.

        The first attempt is not retried, so that a wrong URL or credential fails at once.
        """
        if self._supervisor is not None:
            raise RuntimeError("client already started")
        try:
            live = await self._open()
        except _Failure as failure:
            self._finish(failure.reason)
            raise ClientClosed(failure.reason) from None
        await self._install(live)
        self._supervisor = asyncio.create_task(self._supervise(live), name="wsguard-client")
        return live.welcome

    async def close(self) -> ClosedReason:
        """Close the connection with 1000 and stop reconnecting; idempotent."""
        if self.closed_reason is not None:
            return self.closed_reason
        if self._supervisor is not None and self._supervisor is not asyncio.current_task():
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        live = self._live
        if live is not None:
            self._uninstall(live)
            with contextlib.suppress(Exception):
                await live.connection.close(NORMAL.code)
        reason = ClosedReason("closed by the application", code=NORMAL.code, by_client=True)
        self._finish(reason)
        return reason

    async def wait_closed(self) -> ClosedReason:
        """Wait until the client stops, and say why."""
        await self._stopped.wait()
        assert self.closed_reason is not None
        return self.closed_reason

    async def wait_connected(self) -> Welcome:
        """Wait until a connection is open and resubscribed; raise if the client stopped."""
        while not self._connected.is_set() or self._live is None:
            if self.closed_reason is not None:
                raise ClientClosed(self.closed_reason)
            waiters = {asyncio.ensure_future(self._connected.wait())}
            waiters.add(asyncio.ensure_future(self._stopped.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiters:
                    task.cancel()
        return self._live.welcome

    async def drop(self, *, clean: bool) -> None:
        """Lose the current connection on purpose and reconnect at once with ``resume``.

        ``clean`` sends a close frame (1001, as a browser leaving a page) and waits for the
        handshake; otherwise the TCP connection is aborted, as a network failure would. For
        tests and the leak harness.
        """
        live = self._live
        if live is None:
            return
        live.drop_requested = True
        self._uninstall(live)
        if clean:
            await live.connection.close(GOING_AWAY.code)
        else:
            live.connection.transport.abort()

    # ------------------------------------------------------------------------ application API

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self._inbox.get()
        except InboxClosed:
            if self.failure is not None:
                raise self.failure from None
            raise StopAsyncIteration from None

    async def subscribe(
        self, thread_id: str, *, since: Position | None = None, wait: bool = True
    ) -> Subscribed | None:
        """Subscribe to ``thread_id`` now and after every reconnect (then with ``since``).

        ``since`` resumes from a position persisted elsewhere. With ``wait`` (the default),
        return the server's ``subscribed`` answer, which comes after any replayed events.
        """
        self._raise_if_closed()
        self.tracker.subscribe(thread_id, since)
        waiter: asyncio.Future[Subscribed] | None = None
        if wait:
            waiter = asyncio.get_running_loop().create_future()
            self._subscribe_waiters.setdefault(thread_id, []).append(waiter)
        live = self._live
        if live is not None:
            await self._send_subscribe(live, thread_id)
        if waiter is None:
            return None
        try:
            return await waiter
        finally:
            self._forget_waiter(thread_id, waiter)

    async def history(self, thread_id: str, *, since: int = 0, limit: int = 100) -> ThreadHistory:
        """Up to ``limit`` retained events of ``thread_id`` after offset ``since``, over HTTP with
        this client's token (``GET /api/threads/{thread_id}/events``); then
        ``subscribe(thread_id, since=history.position)`` goes on without a gap."""
        if self._token is None:
            raise ValueError("history needs the client's token= (a ticket opens only a socket)")
        token = self._token if isinstance(self._token, str) else await self._token()
        return await fetch_history(http_base(self.url), thread_id, token=token, since=since, limit=limit)

    async def unsubscribe(self, thread_id: str) -> None:
        """Stop receiving ``thread_id`` and stop resubscribing it."""
        self._raise_if_closed()
        self.tracker.unsubscribe(thread_id)
        live = self._live
        if live is not None:
            with contextlib.suppress(ConnectionLost):
                await self.request({"type": "unsubscribe", "thread_id": thread_id})

    async def send_message(self, thread_id: str, text: str) -> None:
        """Start a run of the server's demo agent on ``thread_id`` (docs/protocol.md section 5)."""
        await self.send({"type": "message", "thread_id": thread_id, "text": text})

    async def ping(self) -> None:
        """An application-level ``ping``; returns when the ``pong`` arrives."""
        await self.request({"type": "ping"})

    async def refresh(self, token: str) -> Frame:
        """Extend the session's expiry with a fresh token for the same user."""
        return await self.request({"type": "refresh", "token": token})

    async def send(self, command: Mapping[str, Any]) -> None:
        """Send one command as is, without waiting for an answer."""
        live = self._require_live()
        try:
            await live.connection.send(json.dumps(dict(command)))
        except ConnectionClosed as error:
            raise ConnectionLost("connection closed while sending") from error

    async def request(self, command: Mapping[str, Any]) -> Frame:
        """Send ``command`` with a fresh ``ref`` and return the frame that echoes it.

        Raise :class:`CommandError` on an ``error`` answer and :class:`ConnectionLost` if the
        connection drops first.
        """
        live = self._require_live()
        ref = next(self._refs)
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        live.replies[ref] = reply
        try:
            await self.send({**command, "ref": ref})
            frame = await reply
        finally:
            live.replies.pop(ref, None)
        if isinstance(frame, ServerError):
            raise CommandError(frame)
        return frame

    # ---------------------------------------------------------------------------- internals

    def _raise_if_closed(self) -> None:
        if self.closed_reason is not None:
            raise ClientClosed(self.closed_reason)

    def _require_live(self) -> _Live:
        self._raise_if_closed()
        if self._live is None:
            raise ConnectionLost("not connected right now")
        return self._live

    def _forget_waiter(self, thread_id: str, waiter: asyncio.Future[Subscribed]) -> None:
        waiters = self._subscribe_waiters.get(thread_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._subscribe_waiters[thread_id]

    @property
    def _fresh_credentials(self) -> bool:
        return self._ticket_provider is not None or callable(self._token)

    async def _connection_url_and_headers(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("resume", "ticket")]
        headers: dict[str, str] = {}
        if self._ticket_provider is not None:
            query.append(("ticket", await self._ticket_provider()))
        elif isinstance(self._token, str):
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._token is not None:
            headers["Authorization"] = f"Bearer {await self._token()}"
        if self.session_id is not None:
            query.append(("resume", self.session_id))
        return urlunsplit(parts._replace(query=urlencode(query))), headers

    async def _open(self) -> _Live:
        """One attempt: credentials, upgrade, ``welcome``. Failures become :class:`_Failure`."""
        try:
            url, headers = await self._connection_url_and_headers()
        except CredentialsRefused as error:
            raise self._refused(error.status, error.retry_after) from error
        except (OSError, TimeoutError) as error:
            raise self._network_failure(error) from error
        try:
            connection = await ws_connect(url, additional_headers=headers, **self._connect_options)
        except InvalidStatus as error:
            response = error.response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise self._refused(response.status_code, retry_after) from error
        except InvalidURI as error:
            raise _Failure(Decision(False, 0.0, str(error)), ClosedReason(str(error))) from error
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise self._network_failure(error) from error
        try:
            async with asyncio.timeout(self._welcome_timeout):
                welcome = await self._receive_welcome(connection)
        except ConnectionClosed as closed:
            raise self._closed_failure(connection, closed) from None
        except TimeoutError as error:
            connection.transport.abort()
            raise self._network_failure(error) from error
        except BaseException:
            connection.transport.abort()
            raise
        self.connections_opened += 1
        return _Live(connection, welcome)

    async def _receive_welcome(self, connection: ClientConnection) -> Welcome:
        frame = parse_frame(await connection.recv())
        if not isinstance(frame, Welcome):
            raise MalformedFrame(f"expected 'welcome' first, got {frame!r}")
        return frame

    def _refused(self, status: int, retry_after: float | None) -> _Failure:
        decision = self.policy.after_refusal(status, retry_after)
        reason = ClosedReason(decision.why, http_status=status, retry_after=retry_after)
        return _Failure(decision, reason)

    def _network_failure(self, error: BaseException) -> _Failure:
        decision = self.policy.after_network_error()
        return _Failure(decision, ClosedReason(f"{decision.why}: {error!r}"))

    def _closed_failure(
        self, connection: ClientConnection, closed: ConnectionClosed | None = None
    ) -> _Failure:
        """Decide after a close; the code is the one the server sent, 1006 when none came."""
        received = closed.rcvd if closed is not None else connection.protocol.close_rcvd
        code = received.code if received is not None else ABNORMAL
        text = received.reason if received is not None else ""
        decision = self.policy.after_close(code, fresh_credentials=self._fresh_credentials)
        return _Failure(decision, ClosedReason(decision.why, code=code, reason=text))

    async def _install(self, live: _Live) -> None:
        """Make ``live`` current: record the session, resubscribe every remembered thread."""
        self._live = live
        self.welcome = live.welcome
        self.session_id = live.welcome.session_id
        live.unacknowledged = set(self.tracker.subscriptions)
        if not live.unacknowledged:
            self.policy.connected()
        for thread_id in self.tracker.subscriptions:
            await self._send_subscribe(live, thread_id)
        if self._live is live:
            self._connected.set()

    def _uninstall(self, live: _Live) -> None:
        """``live`` is no longer current: fail what waited on its answers."""
        if self._live is live:
            self._live = None
            self._connected.clear()
        self._subscribe_refs.clear()
        for reply in live.replies.values():
            if not reply.done():
                reply.set_exception(ConnectionLost("connection closed before the answer"))
        live.replies.clear()

    async def _send_subscribe(self, live: _Live, thread_id: str) -> None:
        ref = next(self._refs)
        command = {**self.tracker.subscribe_command(thread_id), "ref": ref}
        self._subscribe_refs[ref] = thread_id
        try:
            await live.connection.send(json.dumps(command))
        except ConnectionClosed:
            self._subscribe_refs.pop(ref, None)

    async def _supervise(self, live: _Live) -> None:
        """Keep connected; an unexpected error stops the client and ends iteration with it."""
        try:
            await self._stay_connected(live)
        except Exception as error:
            logger.error("client failed", exc_info=error)
            self.failure = error
            current = self._live or live
            self._uninstall(current)
            current.connection.transport.abort()
            self._finish(ClosedReason(f"client failed: {error!r}"))

    async def _stay_connected(self, live: _Live) -> None:
        """Read until the connection ends, then reconnect or stop, until told to close."""
        while True:
            await self._read(live)
            self._uninstall(live)
            failure = self._closed_failure(live.connection)
            decision, reason = failure.decision, failure.reason
            self.last_disconnect = reason
            if live.drop_requested:
                decision = Decision(True, 0.0, "dropped on request")
            while True:
                if not decision.reconnect or not self._reconnect:
                    self._finish(reason if not decision.reconnect else self._no_reconnect(reason))
                    with contextlib.suppress(Exception):
                        await live.connection.close()
                    return
                logger.info("reconnecting in %.3fs: %s", decision.delay, decision.why)
                await asyncio.sleep(decision.delay)
                try:
                    live = await self._open()
                except _Failure as failure:
                    self.failed_attempts += 1
                    decision, reason = failure.decision, failure.reason
                    self.last_disconnect = reason
                    continue
                break
            await self._install(live)

    def _no_reconnect(self, reason: ClosedReason) -> ClosedReason:
        return ClosedReason(
            f"reconnect disabled; {reason.why}",
            code=reason.code,
            reason=reason.reason,
            http_status=reason.http_status,
            retry_after=reason.retry_after,
        )

    async def _read(self, live: _Live) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in live.connection:
                try:
                    frame = parse_frame(message)
                except MalformedFrame as error:
                    logger.warning("ignoring a malformed frame: %s", error)
                    continue
                await self._dispatch(live, frame)

    async def _dispatch(self, live: _Live, frame: Frame) -> None:
        if isinstance(frame, Event):
            unsubscribed = frame.thread_id is not None and not self.tracker.is_subscribed(frame.thread_id)
            if not unsubscribed and self.tracker.accept(frame):
                await self._inbox.put(frame)
            return
        if isinstance(frame, Subscribed):
            if isinstance(frame.ref, int):
                self._subscribe_refs.pop(frame.ref, None)
            self.replayed_events += frame.replayed
            self._acknowledged(live, frame.thread_id)
            if self.tracker.is_subscribed(frame.thread_id):
                notice = self.tracker.on_subscribed(frame)
                if notice is not None:
                    await self._inbox.put(notice)
            for waiter in self._subscribe_waiters.get(frame.thread_id, []):
                if not waiter.done():
                    waiter.set_result(frame)
            return
        ref = getattr(frame, "ref", None)
        if isinstance(frame, ServerError) and isinstance(ref, int) and ref in self._subscribe_refs:
            thread_id = self._subscribe_refs.pop(ref)
            self._subscription_refused(thread_id, frame)
            self._acknowledged(live, thread_id)
            return
        reply = live.replies.get(ref) if isinstance(ref, int) else None
        if reply is not None and not reply.done():
            reply.set_result(frame)
        elif isinstance(frame, ServerError):
            logger.warning("server error: %s: %s", frame.code, frame.message)
        elif isinstance(frame, UnknownFrame):
            logger.debug("ignoring a frame of unknown type %r", frame.type)

    def _acknowledged(self, live: _Live, thread_id: str) -> None:
        """Once every resubscription is answered, the connection has recovered: reset backoff.

        Not at ``welcome``: a server that accepts and then cuts the connection during the
        replay (a backlog over its queue limit) would otherwise be retried without backoff.
        """
        if thread_id in live.unacknowledged:
            live.unacknowledged.discard(thread_id)
            if not live.unacknowledged:
                self.policy.connected()

    def _subscription_refused(self, thread_id: str, error: ServerError) -> None:
        """The server refused a subscription: forget the thread and tell whoever waited."""
        self.tracker.unsubscribe(thread_id)
        for waiter in self._subscribe_waiters.pop(thread_id, []):
            if not waiter.done():
                waiter.set_exception(CommandError(error))

    def _finish(self, reason: ClosedReason) -> None:
        """Stop for good: record why, end the iteration, fail every waiter."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if reason.by_client:
            logger.info("client closed")
        else:
            logger.warning("client stopped: %s", reason.why)
        for waiters in self._subscribe_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(ClientClosed(reason))
        self._subscribe_waiters.clear()
        self._inbox.close()
        self._stopped.set()


connect = Client
"""``async with connect(url, token=...) as client:``, as with ``websockets.connect``."""
