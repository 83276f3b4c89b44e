"""The dashboard's figures: one sample a second, the last 15 minutes kept for a page that opens.

Sampling reads counts the hub already keeps (the registry's sizes, the metrics' counters). The
history lives in ring buffers of machine numbers allocated once at start, so taking a sample
leaves no object behind: the leak harness's exact allocation count stays flat while the server
samples (a growing list of samples would read as a leak for 15 minutes).
"""

import asyncio
import logging
import time
from array import array
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from wsguard import close
from wsguard.periodic import Periodic
from wsguard.runtime.hub import Hub
from wsguard.transport.descriptors import descriptor_count

logger = logging.getLogger("wsguard")

HISTORY_SECONDS = 900
P99_WINDOW_SECONDS = 60
OTHER = "other"
REASONS = (
    close.NORMAL.reason,
    close.GOING_AWAY.reason,
    close.UNSUPPORTED_DATA.reason,
    close.POLICY_VIOLATION.reason,
    close.TOO_BIG.reason,
    close.INTERNAL_ERROR.reason,
    close.HEARTBEAT_TIMEOUT.reason,
    close.SUPERSEDED.reason,
    close.REPLACED.reason,
    close.DISCONNECTED_BY_SERVER.reason,
    close.SLOW_CONSUMER.reason,
    close.TOO_MANY_CONNECTIONS.reason,
    close.TOKEN_EXPIRED.reason,
    close.CLIENT_CLOSED,
    close.CONNECTION_LOST,
    OTHER,
)
"""Every label of ``wsguard_connections_closed_total`` (anything else counts as ``other``)."""

FIELDS = (
    "t",
    "connections",
    "users",
    "registry_entries",
    "tasks",
    "fds",
    "rss_bytes",
    "backend_up",
    "evictions",
    "heartbeat_reaps",
    "cleanup_p99_ms",
)


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


class Ring:
    """``size`` rows of ``width`` doubles, allocated once; the oldest row is overwritten."""

    def __init__(self, size: int, width: int) -> None:
        self.size, self.width = size, width
        self._values = array("d", bytes(8 * size * width))
        self._next = 0
        self.count = 0

    def append(self, row: list[float]) -> None:
        start = self._next * self.width
        for offset, value in enumerate(row):
            self._values[start + offset] = value
        self._next = (self._next + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def row(self, age: int) -> list[float]:
        """The row appended ``age`` appends ago (0: the latest)."""
        index = (self._next - 1 - age) % self.size
        return self._values[index * self.width : (index + 1) * self.width].tolist()


def p99_bound(earlier: list[float], later: list[float], bounds: list[float]) -> float | None:
    """The smallest bucket bound holding 99% of the observations between two cumulative readings."""
    counts = [after - before for before, after in zip(earlier, later, strict=True)]
    everything = counts[-1] if counts else 0.0
    if everything <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= 0.99 * everything:
            return bound
    return None


class FeedSampler:
    """Takes a sample every ``interval`` seconds while the server runs, and keeps 15 minutes."""

    def __init__(self, hub: Hub, interval: float = 1.0) -> None:
        self.hub = hub
        self.interval = interval
        self._bounds = [bound for bound, _ in self._cleanup_buckets()]
        self._history = Ring(int(HISTORY_SECONDS / interval), len(FIELDS) + len(REASONS))
        self._buckets = Ring(int(P99_WINDOW_SECONDS / interval) + 1, len(self._bounds))
        self._process = psutil.Process()
        self._periodic = Periodic(
            interval,
            self._sample_now,
            name="wsguard dashboard sampler",
            survive=(OSError,),
            on_error=_skip_beat,
        )
        """An unreadable /proc (e.g. at the descriptor limit) skips a beat; anything else stops it."""

    def _cleanup_buckets(self) -> list[tuple[float, float]]:
        return [
            (float(sample.labels["le"]), sample.value)
            for family in self.hub.metrics.cleanup_seconds.collect()
            for sample in family.samples
            if sample.name.endswith("_bucket")
        ]

    def _closes(self) -> list[float]:
        totals = [0.0] * len(REASONS)
        for family in self.hub.metrics.closed.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    index = REASONS.index(reason) if reason in REASONS else len(REASONS) - 1
                    totals[index] += sample.value
        return totals

    def sample(self) -> None:
        """Read the figures now into the history."""
        snapshot = self.hub.snapshot()
        metrics = self.hub.metrics
        buckets = [value for _, value in self._cleanup_buckets()]
        self._buckets.append(buckets)
        oldest = self._buckets.row(self._buckets.count - 1)
        p99 = p99_bound(oldest, buckets, self._bounds) if self._buckets.count > 1 else None
        finite = self._bounds[-2]
        row = [
            time.time(),
            snapshot.connections,
            snapshot.users,
            snapshot.registry_entries,
            len(asyncio.all_tasks()),
            descriptor_count(self._process),
            self._process.memory_info().rss,
            1.0 if snapshot.backend_up else 0.0,
            _total(metrics.evictions),
            _total(metrics.zombies_reaped),
            -1.0 if p99 is None else min(p99, finite) * 1000,
        ]
        self._history.append(row + self._closes())

    def _decode(self, row: list[float]) -> Sample:
        named = dict(zip(FIELDS, row, strict=False))
        closes = {reason: value for reason, value in zip(REASONS, row[len(FIELDS) :], strict=True) if value}
        p99 = named["cleanup_p99_ms"]
        return Sample(
            t=named["t"],
            connections=int(named["connections"]),
            users=int(named["users"]),
            registry_entries=int(named["registry_entries"]),
            tasks=int(named["tasks"]),
            fds=int(named["fds"]),
            rss_bytes=int(named["rss_bytes"]),
            backend_up=named["backend_up"] == 1.0,
            evictions=named["evictions"],
            slow_consumer_closes=closes.get(close.SLOW_CONSUMER.reason, 0.0),
            heartbeat_reaps=named["heartbeat_reaps"],
            closes=closes,
            cleanup_p99_ms=None if p99 < 0 else p99,
        )

    def latest(self) -> Sample:
        if not self._history.count:
            self.sample()
        return self._decode(self._history.row(0))

    def history(self) -> list[Sample]:
        """Every kept sample, oldest first."""
        return [self._decode(self._history.row(age)) for age in reversed(range(self._history.count))]

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _sample_now(self) -> None:
        self.sample()


def _skip_beat(error: Exception) -> None:
    logger.debug("dashboard sample skipped: %s", error)


def _total(counter: Any) -> float:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0
