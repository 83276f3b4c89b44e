"""A bounded hand-off from the reading task to the application's ``async for``.

When the application falls behind, the reader waits for room instead of buffering without
bound; the socket then stops being read and the server's slow-consumer rule takes over.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from wsguard.errors import WSGuardError

T = TypeVar("T")


class InboxClosed(WSGuardError):
    """The inbox is closed and empty."""


class Inbox(Generic[T]):
    """A FIFO with a size bound whose readers see the end once it is closed and drained."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the inbox is full; items put after close are dropped."""
        while len(self._items) >= self._maxsize and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        if self._closed:
            return
        self._items.append(item)
        self._readable.set()

    async def get(self) -> T:
        """The oldest item; raise :class:`InboxClosed` once closed and empty."""
        while not self._items:
            if self._closed:
                raise InboxClosed
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item

    def close(self) -> None:
        """No more items; readers drain what is left, then see the end."""
        self._closed = True
        self._readable.set()
        self._writable.set()
