"""The small interface every backend implements."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wsguard.context import RunContext
from wsguard.core.frames import Since
from wsguard.core.thread_log import Recovery


@dataclass(frozen=True, slots=True)
class Envelope:
    """A published event on its way to the connections: whose, which thread, and the wire frame."""

    user_id: str
    thread_id: str | None
    offset: int | None
    frame: str


@dataclass(frozen=True, slots=True)
class Published:
    offset: int | None
    epoch: str


Deliver = Callable[[Envelope], None]


class Backend(Protocol):
    """Numbers, retains and fans out events; answers recovery questions."""

    @property
    def up(self) -> bool:
        """Whether the backend can take events now."""
        ...

    async def start(self, deliver: Deliver) -> None:
        """Begin delivering published events (from any instance) to ``deliver``."""
        ...

    async def close(self) -> None: ...

    async def publish(
        self,
        user_id: str,
        thread_id: str | None,
        event: str,
        data: dict[str, Any],
        run: RunContext | None = None,
    ) -> Published:
        """Number, retain and deliver one event; user-level events (no thread) are not retained."""
        ...

    async def recover(self, user_id: str, thread_id: str, since: Since | None) -> Recovery:
        """What a subscriber of the thread that last saw ``since`` must be replayed."""
        ...

    def expire(self, now: float) -> None:
        """Drop retained events past their age."""
        ...

    @property
    def thread_log_count(self) -> int: ...
