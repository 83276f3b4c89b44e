"""A real Server-Sent Events client for tests and the harness: open ``/sse`` as a user, read its
messages (frames and ids), post commands, go away with or without closing cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from wsguard.errors import WSGuardError
from wsguard.transport.tcp import RESET_ON_CLOSE

Frame = dict[str, Any]


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every stream: each client building its own (loading the CA bundle)
    blocks the event loop for tens of milliseconds, which a harness opening hundreds cannot."""
    return httpx.create_ssl_context()


class StreamRefused(WSGuardError, AssertionError):
    """``GET /sse`` answered with another status than 200: an AssertionError, as a test expects of
    a refusal, with the status for a client that waits out a 429."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"stream refused: {status} {body}")
        self.status = status


class StreamClient:
    """One ``GET /sse`` response, read message by message."""

    def __init__(
        self, client: httpx.AsyncClient, exits: AsyncExitStack, source: EventSource, timeout: float = 10.0
    ) -> None:
        """``timeout``: seconds a command's POST may take (the stream itself waits as long as
        it lasts)."""
        self._client = client
        self._timeout = timeout
        self._exits = exits
        self.response = source.response
        self._messages: AsyncIterator[ServerSentEvent] = source.aiter_sse()
        self.last_id: str | None = None
        """The last ``id:`` seen: what a reconnect sends back as ``Last-Event-ID``."""
        self.welcome: Frame = {}

    @classmethod
    async def open(
        cls,
        base_url: str,
        token: str | None = None,
        *,
        subscribe: Iterable[str] = (),
        last_event_id: str | None = None,
        ticket: str | None = None,
        resume: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> StreamClient:
        """Open a stream and read its ``welcome``; :class:`StreamRefused` when the server refuses
        it (with the status and body), AssertionError when it sends anything else first.
        ``headers``: more request headers (an embedding's own credentials)."""
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        params: list[tuple[str, str]] = [("subscribe", thread) for thread in subscribe]
        params += [(name, value) for name, value in (("ticket", ticket), ("resume", resume)) if value]
        exits = AsyncExitStack()
        client = await exits.enter_async_context(
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, read=None), verify=_tls())
        )
        try:
            source = await exits.enter_async_context(
                aconnect_sse(client, "GET", "/sse", params=params, headers=headers)
            )
            if source.response.status_code != 200:
                body = (await source.response.aread()).decode(errors="replace")
                raise StreamRefused(source.response.status_code, body)
            stream = cls(client, exits, source, timeout)
            stream.welcome = await stream.receive(timeout)
        except BaseException:
            await exits.aclose()
            raise
        if stream.welcome.get("type") != "welcome":
            await stream.close()
            raise AssertionError(f"expected welcome, got {stream.welcome}")
        return stream

    async def receive(self, timeout: float | None = 5.0) -> Frame:
        """The next message's frame (its ``id:`` kept as :attr:`last_id`); fails after ``timeout``
        seconds (None: waits as long as the stream lasts), or with StopAsyncIteration when the
        stream ended."""
        async with asyncio.timeout(timeout):
            message = await anext(self._messages)
            while not message.data:
                # A heartbeat comment, which httpx-sse dispatches as a message without data once
                # any ``id:`` was seen (the SSE spec dispatches nothing for it).
                message = await anext(self._messages)
        if message.id:
            self.last_id = message.id
        frame: Frame = json.loads(message.data)
        return frame

    async def command(self, **frame: Any) -> httpx.Response:
        """POST one command to the stream's ``commands`` path; its reply comes on the stream."""
        return await self._client.post(
            self.welcome["commands"], content=json.dumps(frame), timeout=self._timeout
        )

    async def close(self) -> None:
        """Go away: the response and its connection are closed (the server sees the client go)."""
        await self._exits.aclose()

    def _setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        sock = self.response.extensions["network_stream"].get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)

    def reset_on_close(self) -> None:
        """Make the coming close reset the stream's TCP connection rather than end it, whoever
        closes it (:meth:`close`, or a read cancelled mid-message, which closes the response)."""
        self._setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)

    def limit_receive_buffer(self, size: int) -> None:
        """Shrink the stream's receive buffer to ``size`` and stop the kernel from growing it, for
        a reader about to stop reading: the unsent bytes then stay on the server rather than in
        this machine's kernel, which grows the buffer of a stream read fast to megabytes. Only
        then: a buffer smaller than the peer's segments (64 KiB on loopback) keeps the window
        shut, and reading would crawl."""
        self._setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    async def drop(self) -> None:
        """Go away without a goodbye: the TCP connection is reset rather than ended, as a client
        that crashed or was killed leaves it."""
        self.reset_on_close()
        await self.close()
