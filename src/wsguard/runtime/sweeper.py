"""The safety net: a periodic check of invariants and expiry of what has aged out.

It is not how connections are cleaned up (ownership does that); it counts what it had to fix,
and that count should stay 0.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from wsguard.periodic import Periodic

logger = logging.getLogger("wsguard")

Chore = Callable[[float], object]
AsyncChore = Callable[[float], Awaitable[object]]
"""A chore that talks to the backend (re-reading a shared key): awaited after the others, each
within one interval, so that a hung backend never stops the sweep."""


class Sweeper:
    def __init__(self, interval: float, chores: list[Chore], async_chores: Sequence[AsyncChore] = ()) -> None:
        self.interval = interval
        self.chores = chores
        self.async_chores = list(async_chores)
        self._periodic = Periodic(interval, self._sweep_all, name="wsguard sweeper", wait_first=True)
        """Each chore catches and logs its own failure, so no tick ever ends the loop."""

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def sweep(self) -> None:
        now = time.monotonic()
        for chore in self.chores:
            try:
                chore(now)
            except Exception:
                logger.exception("sweeper chore failed")

    async def sweep_async(self) -> None:
        now = time.monotonic()
        for chore in self.async_chores:
            try:
                async with asyncio.timeout(self.interval):
                    await chore(now)
            except TimeoutError:
                logger.warning("a sweeper chore took longer than %gs: left for the next sweep", self.interval)
            except Exception:
                logger.exception("sweeper chore failed")

    async def _sweep_all(self) -> None:
        self.sweep()
        await self.sweep_async()
