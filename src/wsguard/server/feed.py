"""The dashboard's figures: one sample a second, the last 15 minutes kept for a page that opens.

Sampling reads counts the hub already keeps (the registry's sizes, the metrics' counters), so a
sample costs the same at 10 connections as at 10,000 apart from the tasks count.
"""

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from wsguard import close
from wsguard.runtime.hub import Hub

HISTORY_SECONDS = 900
P99_WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Sample:
    """This instance at one moment; counters are totals since start (the page takes differences)."""

    t: float
    connections: int
    users: int
    registry_entries: int
    tasks: int
    fds: int
    rss_bytes: int
    backend_up: bool
    evictions: float
    slow_consumer_closes: float
    heartbeat_reaps: float
    closes: dict[str, float]
    cleanup_p99_ms: float | None
    """The bucket bound under which 99% of the last minute's cleanups fell (the largest finite
    bound when they took longer); None without any."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def p99_bound(earlier: list[tuple[float, float]], later: list[tuple[float, float]]) -> float | None:
    """The smallest bucket bound holding 99% of the observations between two cumulative readings."""
    before = dict(earlier)
    counts = [(bound, total - before.get(bound, 0.0)) for bound, total in later]
    everything = counts[-1][1] if counts else 0.0
    if everything <= 0:
        return None
    for bound, count in counts:
        if count >= 0.99 * everything:
            return bound
    return None


class Sampler:
    """Takes a :class:`Sample` every ``interval`` seconds while the server runs."""

    def __init__(self, hub: Hub, interval: float = 1.0) -> None:
        self.hub = hub
        self.interval = interval
        keep = int(HISTORY_SECONDS / interval)
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._buckets: deque[list[tuple[float, float]]] = deque(maxlen=int(P99_WINDOW_SECONDS / interval) + 1)
        self._process = psutil.Process()
        self._task: asyncio.Task[None] | None = None

    def _cleanup_buckets(self) -> list[tuple[float, float]]:
        found: list[tuple[float, float]] = []
        for family in self.hub.metrics.cleanup_seconds.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    found.append((float(sample.labels["le"]), sample.value))
        return found

    def _closes(self) -> dict[str, float]:
        return {
            sample.labels["reason"]: sample.value
            for family in self.hub.metrics.closed.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        }

    def sample(self) -> Sample:
        """Read the figures now (and remember them)."""
        snapshot = self.hub.snapshot()
        metrics = self.hub.metrics
        buckets = self._cleanup_buckets()
        self._buckets.append(buckets)
        p99 = p99_bound(self._buckets[0], buckets) if len(self._buckets) > 1 else None
        closes = self._closes()
        taken = Sample(
            t=time.time(),
            connections=snapshot.connections,
            users=snapshot.users,
            registry_entries=snapshot.registry_entries,
            tasks=len(asyncio.all_tasks()),
            fds=self._process.num_fds(),
            rss_bytes=self._process.memory_info().rss,
            backend_up=snapshot.backend_up,
            evictions=_total(metrics.evictions),
            slow_consumer_closes=closes.get(close.SLOW_CONSUMER.reason, 0.0),
            heartbeat_reaps=_total(metrics.zombies_reaped),
            closes=closes,
            cleanup_p99_ms=None if p99 is None else min(p99, buckets[-2][0]) * 1000,
        )
        self.samples.append(taken)
        return taken

    def latest(self) -> Sample:
        return self.samples[-1] if self.samples else self.sample()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wsguard dashboard sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)


def _total(counter: Any) -> float:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0
