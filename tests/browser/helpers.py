"""Publishing from the test, and what every tab must have received."""

from __future__ import annotations

from typing import Any

from wsguard.processes import ServerProcess


class Publisher:
    """Publishes numbered events on a user's threads and remembers the offsets the server gave."""

    def __init__(self, server: ServerProcess, user: str) -> None:
        self.server = server
        self.user = user
        self.headers = server.auth("publisher", admin=True)
        self.offsets: dict[str, list[int]] = {}

    def publish(self, thread: str, count: int = 1) -> None:
        for _ in range(count):
            body = {"user_id": self.user, "thread_id": thread, "event": "step", "data": {}}
            response = self.server.http.post("/api/publish", json=body, headers=self.headers)
            response.raise_for_status()
            self.offsets.setdefault(thread, []).append(response.json()["offset"])

    def everything(self, snapshots: list[dict[str, Any]]) -> bool:
        """Every tab has every published offset of its threads (and maybe more: checked apart)."""
        return all(
            tab["log"].get(thread, [])[-1:] == offsets[-1:]
            for tab in snapshots
            for thread, offsets in self.offsets.items()
            if thread in tab["log"]
        )


def assert_exact(publisher: Publisher, snapshots: list[dict[str, Any]]) -> None:
    """Every tab got exactly the published offsets of every thread, in order, with no failure."""
    for number, tab in enumerate(snapshots):
        for thread, offsets in publisher.offsets.items():
            assert tab["log"][thread] == offsets, f"tab {number} ({tab['role']}), thread {thread}"
        assert tab["failures"] == [], f"tab {number}: {tab['failures']}"


def metric(server: ServerProcess, name: str) -> float:
    return server.metrics()[name]
