"""A real Server-Sent Events client for tests and the harness: open ``/sse`` as a user, read its
messages (frames and ids), post commands, go away with or without closing cleanly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

Frame = dict[str, Any]


class StreamClient:
    """One ``GET /sse`` response, read message by message."""

    def __init__(self, client: httpx.AsyncClient, exits: AsyncExitStack, source: EventSource) -> None:
        self._client = client
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
        """Open a stream and read its ``welcome``; AssertionError when the server refuses it
        (with the status and body) or sends anything else first. ``headers``: more request
        headers (an embedding's own credentials)."""
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        params: list[tuple[str, str]] = [("subscribe", thread) for thread in subscribe]
        params += [(name, value) for name, value in (("ticket", ticket), ("resume", resume)) if value]
        exits = AsyncExitStack()
        client = await exits.enter_async_context(
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, read=None))
        )
        try:
            source = await exits.enter_async_context(
                aconnect_sse(client, "GET", "/sse", params=params, headers=headers)
            )
            if source.response.status_code != 200:
                body = (await source.response.aread()).decode(errors="replace")
                raise AssertionError(f"stream refused: {source.response.status_code} {body}")
            stream = cls(client, exits, source)
            stream.welcome = await stream.receive(timeout)
        except BaseException:
            await exits.aclose()
            raise
        if stream.welcome.get("type") != "welcome":
            await stream.close()
            raise AssertionError(f"expected welcome, got {stream.welcome}")
        return stream

    async def receive(self, timeout: float = 5.0) -> Frame:
        """The next message's frame (its ``id:`` kept as :attr:`last_id`); fails after ``timeout``
        seconds, or with StopAsyncIteration when the stream ended."""
        async with asyncio.timeout(timeout):
            message = await anext(self._messages)
        if message.id:
            self.last_id = message.id
        frame: Frame = json.loads(message.data)
        return frame

    async def command(self, **frame: Any) -> httpx.Response:
        """POST one command to the stream's ``commands`` path; its reply comes on the stream."""
        return await self._client.post(self.welcome["commands"], content=json.dumps(frame))

    async def close(self) -> None:
        """Go away: the response and its connection are closed (the server sees the client go)."""
        await self._exits.aclose()
