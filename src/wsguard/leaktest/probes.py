"""Black-box probes: ``/metrics`` scrapes and, for a server the harness started, psutil.

A background sampler records both through the whole run, so that the report can chart the
connection counts and memory over time and name each scenario's peaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import psutil

from wsguard.leaktest.verdict import BLOCKS, RSS
from wsguard.testing.metrics import parse_metrics

PSUTIL_RSS = "psutil_rss_bytes"
PSUTIL_FDS = "psutil_open_fds"
PSUTIL_THREADS = "psutil_threads"

CHARTED: tuple[str, ...] = (
    "wsguard_connections_active",
    "wsguard_users_active",
    "wsguard_user_connections_max",
    "wsguard_registry_entries",
    "wsguard_tasks_active",
    "process_open_fds",
    BLOCKS,
    RSS,
    PSUTIL_RSS,
    PSUTIL_FDS,
    PSUTIL_THREADS,
)


class MetricsProbe:
    """Scrapes a Prometheus endpoint into flat samples (see :func:`parse_metrics`)."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self._client = client

    async def scrape(self, *, collect_garbage: bool = False) -> dict[str, float]:
        """One scrape; ``collect_garbage`` asks the server to collect garbage before counting
        its allocated blocks (``?collect_garbage=1``; a server that ignores it is still read)."""
        params = {"collect_garbage": "1"} if collect_garbage else None
        response = await self._client.get(self.url, params=params)
        response.raise_for_status()
        return parse_metrics(response.text)

    async def settled(self, repeats: int = 3) -> dict[str, float]:
        """A scrape whose memory gauges are the median of ``repeats`` garbage-collected scrapes."""
        scrapes = [await self.scrape(collect_garbage=True) for _ in range(repeats)]
        merged = dict(scrapes[-1])
        for name in (BLOCKS, RSS):
            values = [s[name] for s in scrapes if name in s]
            if values:
                merged[name] = statistics.median(values)
        return merged


class ProcessProbe:
    """Resident memory, open file descriptors and threads of a process the harness started."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def sample(self) -> dict[str, float]:
        try:
            with self._process.oneshot():
                return {
                    PSUTIL_RSS: float(self._process.memory_info().rss),
                    PSUTIL_FDS: float(self._process.num_fds()),
                    PSUTIL_THREADS: float(self._process.num_threads()),
                }
        except psutil.Error:
            return {}


@dataclass
class Sample:
    """Everything seen at one moment, tagged with the scenario that was running."""

    at: float
    scenario: str
    values: dict[str, float]


@dataclass
class Timeline:
    """The samples of a whole run, in time order."""

    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def add(self, scenario: str, values: Mapping[str, float]) -> None:
        self.samples.append(Sample(time.monotonic() - self.started, scenario, dict(values)))

    def of(self, scenario: str) -> list[Sample]:
        return [s for s in self.samples if s.scenario == scenario]

    def peak(self, scenario: str, name: str) -> float | None:
        values = [s.values[name] for s in self.of(scenario) if name in s.values]
        return max(values) if values else None


class Sampler:
    """Samples the metrics and the process every ``interval`` seconds into a :class:`Timeline`."""

    def __init__(
        self,
        metrics: MetricsProbe,
        process: ProcessProbe | None,
        timeline: Timeline,
        interval: float = 0.1,
    ) -> None:
        self.metrics = metrics
        self.process = process
        self.timeline = timeline
        self.interval = interval
        self.scenario = ""
        self.last: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def sample_once(self) -> dict[str, float]:
        values: dict[str, float] = {}
        with contextlib.suppress(httpx.HTTPError):
            scraped = await self.metrics.scrape()
            values.update({k: v for k, v in scraped.items() if k in CHARTED})
        if self.process is not None:
            values.update(self.process.sample())
        if values:
            self.timeline.add(self.scenario, values)
            self.last = values
        return values

    async def _loop(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self.interval)

    def start(self, scenario: str) -> None:
        self.scenario = scenario
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="leaktest-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
