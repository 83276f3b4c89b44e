"""The ``with`` protocol of the test processes (a server, a Redis, Sentinels, a cluster)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Managed:
    """``with thing:`` starts it on entry and stops it on the way out, whatever happened."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
