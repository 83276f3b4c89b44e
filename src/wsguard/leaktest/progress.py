"""A live progress display: one rewritten status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

from wsguard.leaktest.sampling import PSUTIL_RSS
from wsguard.leaktest.verdict import CONNECTIONS, REGISTRY, RSS, USERS


class Progress:
    """Reports rounds and scenarios as they finish, and the live counts while a round runs."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._status_shown = False

    def _clear(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False

    def line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, scenario: str, round_label: str, values: dict[str, float]) -> None:
        """Rewrite the status line with the latest sample (terminals only)."""
        if not self.live:
            return
        rss = values.get(PSUTIL_RSS, values.get(RSS))
        memory = f"  rss {rss / 1e6:.1f} MB" if rss is not None else ""
        text = (
            f"  {scenario} {round_label}: connections {values.get(CONNECTIONS, 0):g}"
            f"  users {values.get(USERS, 0):g}  registry {values.get(REGISTRY, 0):g}{memory}"
        )
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._status_shown = True

    def done(self) -> None:
        self._clear()
        self.stream.flush()


class Silent(Progress):
    """No output at all (the pytest plugin's default)."""

    def line(self, text: str) -> None:
        return None

    def status(self, scenario: str, round_label: str, values: dict[str, float]) -> None:
        return None
