"""Agent runs started in the background: tracked, so that shutdown stops them, and capped per user."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from wsguard.context import RunContext

logger = logging.getLogger("wsguard")


class Runs:
    """The runs going on in this instance, and how many each user has."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        """0: no limit."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_user: dict[str, int] = {}

    def start(self, run: RunContext, body: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``body`` in the background; False (and nothing started) when the user already has
        ``max_per_user`` running."""
        logger.debug("run %s started on thread %s", run.run_id, run.thread_id)
        limit = self.max_per_user
        running = self._by_user.get(run.user_id, 0)
        if limit and running >= limit:
            return False
        self._by_user[run.user_id] = running + 1
        task = asyncio.create_task(body(), name=f"run {run.run_id}")
        self._tasks.add(task)
        task.add_done_callback(partial(self._ended, run))
        return True

    def _ended(self, run: RunContext, task: asyncio.Task[None]) -> None:
        """Forget the run; an exception it ended with is logged, never lost."""
        self._tasks.discard(task)
        left = self._by_user.get(run.user_id, 1) - 1
        if left > 0:
            self._by_user[run.user_id] = left
        else:
            self._by_user.pop(run.user_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s failed", run.run_id, exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel every run and wait for them to end."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
