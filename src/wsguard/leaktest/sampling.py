"""Black-box probes: ``/metrics`` scrapes and, for a server the harness started, psutil.

A background sampler records both through the whole run, so that the report can chart the
connection counts and memory over time and name each scenario's peaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import psutil

from wsguard.backends.redis.keyspace import Keys
from wsguard.leaktest.verdict import BLOCKS, FDS, LEAK_COUNTS, LEASE_KEYS, LEASE_PATTERN, RSS, per_instance
from wsguard.periodic import Periodic
from wsguard.processes.metrics import parse_metrics
from wsguard.redis_url import is_cluster_url, parse_cluster_url
from wsguard.transport.descriptors import descriptor_count

if TYPE_CHECKING:
    import redis.asyncio

PSUTIL_RSS = "psutil_rss_bytes"
PSUTIL_FDS = "psutil_open_fds"
PSUTIL_THREADS = "psutil_threads"

MAXIMA = frozenset({"wsguard_user_connections_max"})
"""Series whose cluster value is the largest instance's, not the sum."""

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
    LEASE_KEYS,
)


def _charted(key: str) -> bool:
    """A charted series, or one cluster instance's own value of it."""
    name, _, labels = key.partition('{instance="')
    return key in CHARTED or (bool(labels) and name in CHARTED)


def _redis_client(url: str) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """Only a cluster run (with ``redis_url``) needs the redis package."""
    import redis.asyncio
    import redis.asyncio.cluster

    if is_cluster_url(url):
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in parse_cluster_url(url).nodes]
        return redis.asyncio.RedisCluster(startup_nodes=nodes)
    return redis.asyncio.Redis.from_url(url)


def _redis_ports(url: str) -> set[int]:
    """The ports of the shared Redis, or of every node a cluster URL names."""
    if is_cluster_url(url):
        return {port for _, port in parse_cluster_url(url).nodes}
    port = urlsplit(url).port
    return set() if port is None else {port}


class MetricsProbe:
    """Scrapes Prometheus endpoints into flat samples (see :func:`parse_metrics`).

    With several instances (a cluster) a sample is their sum, and every leak count is also kept
    per instance, labelled ``{instance="N"}``, so that each instance is held to its own mark.
    With ``redis_url`` the sample also counts the lease keys left in that Redis.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        client: httpx.AsyncClient,
        *,
        redis_url: str | None = None,
        pids: Sequence[int] | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._client = client
        self._redis = None if redis_url is None else _redis_client(redis_url)
        self._redis_ports = set() if redis_url is None else _redis_ports(redis_url)
        self._keys = Keys(hash_tags=redis_url is not None and is_cluster_url(redis_url))
        self._processes = None if pids is None else [psutil.Process(pid) for pid in pids]

    async def scrape(self, *, collect_garbage: bool = False) -> dict[str, float]:
        """One scrape; ``collect_garbage`` asks the server to collect garbage before counting
        its allocated blocks (``?collect_garbage=1``; a server that ignores or refuses it is still read)."""
        params = {"collect_garbage": "1"} if collect_garbage else None
        samples: list[dict[str, float]] = []
        for url in self.urls:
            response = await self._client.get(url, params=params)
            if response.status_code == 403 and params:
                response = await self._client.get(url)
            response.raise_for_status()
            samples.append(parse_metrics(response.text))
        await self._discount_redis_pool(samples)
        merged = samples[0] if len(samples) == 1 else merge_instances(samples)
        if self._redis is not None:
            merged[LEASE_KEYS] = float(await self._count_lease_keys())
        return merged

    async def _discount_redis_pool(self, samples: Sequence[dict[str, float]]) -> None:
        """Leave each instance's sockets to the shared Redis out of its open descriptors.

        Its client pool grows with how many commands were ever in flight at once; those sockets
        are reused, not leaked. Every other descriptor is still held to its baseline.
        """
        if self._processes is None or not self._redis_ports:
            return
        counts = await asyncio.to_thread(sockets_to_ports, self._processes, self._redis_ports)
        for sample, to_redis in zip(samples, counts, strict=True):
            if FDS in sample:
                sample[FDS] -= to_redis

    async def user_leases(self, user_id: str) -> int | None:
        """How many leases the user holds in the cluster's Redis (one atomic read); None without
        a Redis."""
        if self._redis is None:
            return None
        return int(await self._redis.hlen(self._keys.leases(user_id)))

    async def _count_lease_keys(self) -> int:
        assert self._redis is not None
        return len([key async for key in self._redis.scan_iter(match=LEASE_PATTERN, count=1000)])

    async def settled(self, repeats: int = 3) -> dict[str, float]:
        """A scrape whose memory gauges are the median of ``repeats`` garbage-collected scrapes."""
        scrapes = [await self.scrape(collect_garbage=True) for _ in range(repeats)]
        merged = dict(scrapes[-1])
        for name in (BLOCKS, RSS):
            values = [s[name] for s in scrapes if name in s]
            if values:
                merged[name] = statistics.median(values)
        return merged

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def merge_instances(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One sample of a cluster: every series summed (maxima taken), leak counts also per instance."""
    merged: dict[str, float] = {}
    for sample in samples:
        for name, value in sample.items():
            if name in MAXIMA:
                merged[name] = max(value, merged.get(name, value))
            else:
                merged[name] = merged.get(name, 0.0) + value
    for index, sample in enumerate(samples):
        for name in LEAK_COUNTS:
            if name in sample:
                merged[per_instance(name, index)] = sample[name]
    return merged


class ProcessProbe:
    """Resident memory, open file descriptors and threads of processes the harness started,
    summed over them."""

    def __init__(self, *pids: int) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]

    def sample(self) -> dict[str, float]:
        total = {PSUTIL_RSS: 0.0, PSUTIL_FDS: 0.0, PSUTIL_THREADS: 0.0}
        try:
            for process in self._processes:
                with process.oneshot():
                    total[PSUTIL_RSS] += float(process.memory_info().rss)
                    total[PSUTIL_FDS] += float(descriptor_count(process))
                    total[PSUTIL_THREADS] += float(process.num_threads())
        except psutil.Error:
            return {}
        return total


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


class ResourceSampler:
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
        self._periodic = Periodic(interval, self.sample_once, name="leaktest-sampler")

    async def sample_once(self) -> dict[str, float]:
        values: dict[str, float] = {}
        with contextlib.suppress(httpx.HTTPError):
            scraped = await self.metrics.scrape()
            values.update({k: v for k, v in scraped.items() if self.charted(k)})
        if self.process is not None:
            values.update(self.process.sample())
        if values:
            self.timeline.add(self.scenario, values)
            self.last = values
        return values

    def charted(self, name: str) -> bool:
        """Whether a scraped series is kept in the timeline."""
        return _charted(name)

    def start(self, scenario: str) -> None:
        """Tag the samples from now on with ``scenario``; start sampling unless it already is."""
        self.scenario = scenario
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def sockets_to_ports(processes: Sequence[psutil.Process], ports: Set[int]) -> list[int]:
    """How many TCP sockets each process has open to one of ``ports``.

    psutil's per-process listing parses the machine's whole TCP table for every process (25 ms
    each with the 10,000 sockets a churn leaves in TIME_WAIT), which made most of the harness's
    loop lag in a cluster run. On Linux the table is read once (the kernel's time, without the
    GIL when called from a thread), only the lines that mention the port are split, and their
    sockets are matched to each process's few descriptors.
    """
    try:
        tables = [Path(table).read_text() for table in ("/proc/net/tcp", "/proc/net/tcp6")]
    except OSError:
        return [_sockets_to_ports_portable(process, ports) for process in processes]
    inodes: set[str] = set()
    for port in ports:
        remote = f":{port:04X}"
        needle = f"{remote} "
        for text in tables:
            found = text.find(needle)
            while found != -1:
                start, end = text.rfind("\n", 0, found) + 1, text.find("\n", found)
                end = len(text) if end == -1 else end
                fields = text[start:end].split()
                if len(fields) > 9 and fields[2].endswith(remote):
                    inodes.add(f"socket:[{fields[9]}]")
                found = text.find(needle, end)
    return [_descriptors_among(process.pid, inodes) for process in processes]


def _descriptors_among(pid: int, targets: set[str]) -> int:
    """How many of the process's open descriptors point at one of ``targets``."""
    directory = f"/proc/{pid}/fd"
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    count = 0
    for name in names:
        with contextlib.suppress(OSError):
            count += os.readlink(f"{directory}/{name}") in targets
    return count


def _sockets_to_ports_portable(process: psutil.Process, ports: Set[int]) -> int:
    try:
        connections = process.net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in connections if c.raddr and c.raddr.port in ports)
