"""One background task that runs a coroutine function every ``interval`` seconds.

The server's sweeper, dashboard sampler and instance registration, and the leak harness's
samplers each keep such a loop; this is where its start, its stop and the fate of a tick that
raised are decided once, so that a stopped owner never leaves its task behind.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from wsguard.cancellation import raise_if_cancelled

logger = logging.getLogger("wsguard")

Tick = Callable[[], Awaitable[object]]
OnError = Callable[[Exception], object]


class Periodic:
    """Awaits ``tick`` every ``interval`` seconds in one task named ``name``, from :meth:`start`
    until :meth:`stop`.

    ``interval`` is the pause between the end of one tick and the start of the next: ticks never
    overlap, and a slow one delays the rest. The first tick runs as soon as the task does, or one
    interval later with ``wait_first``. A tick that raises one of ``survive`` is handed to
    ``on_error`` (logged with its traceback by default) and the loop goes on; any other exception
    ends the loop, and :meth:`stop` raises it, so that a broken tick is not silently dropped.
    """

    def __init__(
        self,
        interval: float,
        tick: Tick,
        *,
        name: str,
        wait_first: bool = False,
        survive: tuple[type[Exception], ...] = (),
        on_error: OnError | None = None,
    ) -> None:
        self.interval = interval
        self.name = name
        self._tick = tick
        self._wait_first = wait_first
        self._survive = survive
        self._on_error = on_error or self._log
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Started and not stopped yet (even if a tick's exception ended the loop meanwhile)."""
        return self._task is not None

    def start(self) -> None:
        """Start the task in the running loop; a second call before :meth:`stop` does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended; raise what ended it, if a tick did.

        A cancellation of the caller while it waits propagates: it is not swallowed as if it
        were the task's own."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def _loop(self) -> None:
        if self._wait_first:
            await asyncio.sleep(self.interval)
        while True:
            try:
                await self._tick()
            except self._survive as error:
                self._on_error(error)
            raise_if_cancelled()
            await asyncio.sleep(self.interval)

    def _log(self, error: Exception) -> None:
        logger.error("%s: a tick failed", self.name, exc_info=error)
