"""Log refused WebSocket upgrades without letting a flood of them flood the log.

An attacker or a misconfigured client retrying with a bad token can produce thousands of
refusals a second; one line each would drown everything else. The first refusal is logged at
once; the ones that follow within a window are counted and logged as one summary line.
"""

import asyncio
import logging
from collections import Counter


class RefusalLog:
    """One log line per refusal burst: the first refusal, then a count per window."""

    def __init__(self, logger: logging.Logger, window_seconds: float = 10.0) -> None:
        self._logger = logger
        self._window = window_seconds
        self._counts: Counter[int] = Counter()
        self._window_end: asyncio.TimerHandle | None = None

    def record(self, status: int, client: str, path: str) -> None:
        """Note one refused upgrade; ``path`` must not carry the query (it may hold a ticket)."""
        if self._window_end is None:
            self._logger.info(
                '%s - "WebSocket %s" %d (further refusals summarised every %gs)',
                client,
                path,
                status,
                self._window,
            )
            self._open_window()
        else:
            self._counts[status] += 1

    def _open_window(self) -> None:
        loop = asyncio.get_running_loop()
        self._window_end = loop.call_later(self._window, self._close_window)

    def _close_window(self) -> None:
        self._window_end = None
        if not self._counts:
            return
        total = sum(self._counts.values())
        by_status = ", ".join(f"{status}: {count}" for status, count in sorted(self._counts.items()))
        self._logger.info("refused %d more WebSocket upgrades in %gs (%s)", total, self._window, by_status)
        self._counts.clear()
        self._open_window()
