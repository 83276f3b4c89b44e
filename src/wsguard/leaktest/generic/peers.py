"""Plain WebSocket clients of any application: connect, send a script, read, stall, leave."""

from __future__ import annotations

import asyncio
import contextlib
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wsguard.leaktest.client import _small_window_socket
from wsguard.leaktest.generic.target import GenericTarget


class Peer:
    """One client connection; counts what the application sends it while it reads."""

    def __init__(self, identity: str, ws: ClientConnection) -> None:
        self.identity = identity
        self.ws = ws
        self.received = 0
        self._closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"peer-{identity}")

    async def _read(self) -> None:
        try:
            async for _ in self.ws:
                self.received += 1
        except (ConnectionClosed, OSError, asyncio.CancelledError):
            pass
        finally:
            self._closed.set()

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    async def send(self, text: str) -> bool:
        """Send ``text``; False once the connection is closed (an application may close a client
        it finds too slow or too chatty: a policy, not a failure)."""
        try:
            await self.ws.send(text)
        except (ConnectionClosed, OSError):
            return False
        return True

    async def close(self) -> None:
        """Leave with a close frame."""
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()
        await self.wait_closed(2.0)

    def drop(self) -> None:
        """Drop TCP without a close frame, as a vanished laptop would."""
        self.ws.transport.abort()

    async def leave(self, clean: bool) -> None:
        if clean:
            await self.close()
        else:
            self.drop()
            await self.wait_closed(2.0)

    def stall(self) -> None:
        """Stop reading, for good: the kernel buffers fill and the application's sends back up."""
        self._reader.cancel()
        self.ws.transport.pause_reading()

    async def wait_closed(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._closed.wait()

    async def wait_received(self, count: int, timeout: float) -> bool:
        """Whether at least ``count`` messages arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.received < count and not self.is_closed:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return self.received >= count


async def open_peer(
    target: GenericTarget, identity: str, *, receive_buffer: int | None = None, timeout: float = 10.0
) -> Peer:
    """Connect as ``identity`` and send the target's script; the application's refusal raises.

    Without compression, so that the bytes a stalled reader leaves unread are the bytes sent."""
    url = target.url_for(identity)
    sock = None if receive_buffer is None else await _small_window_socket(url, receive_buffer)
    ws = await connect(
        url,
        sock=sock,
        additional_headers=target.headers_for(identity),
        open_timeout=timeout,
        close_timeout=1.0,
        ping_interval=None,
        compression=None,
        max_size=None,
        max_queue=None,
    )
    peer = Peer(identity, ws)
    for message in target.script_for(identity):
        await peer.send(message)
    return peer


async def leave_all(peers: list[Peer]) -> None:
    """Half of ``peers`` leave with a close frame, the other half drop TCP, all at once."""
    await asyncio.gather(*(peer.leave(clean=index % 2 == 0) for index, peer in enumerate(peers)))
