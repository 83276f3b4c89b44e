"""The measured figures: each puts one load on one server and returns its named values.

A figure returns ``{name: value}``; bench/run.py collects them per server over the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from loadgen import Counts, Link, Target, close_all, open_many, released, settled

Sample = dict[str, float]
POLL_INTERVAL = 0.01
DELIVERY_TIMEOUT = 120.0
QUIET_TIMEOUT = 30.0


async def warm_up(target: Target) -> None:
    """One connection, then a scrape, so that later figures know the server's tasks at rest.

    Servers start some tasks of their own with their first connection, which stay
    (python-engineio its service task); before that, the server is not yet at its rest.
    """
    link = await target.open("warm-up")
    await link.close()
    await asyncio.sleep(0.5)
    target.fewest_tasks = math.inf
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
        await target.counts(http)
    target.rest_rss = target.rss()


@dataclass(frozen=True)
class Spent:
    """A window's wall-clock seconds, and the CPU seconds the server and the load client spent in it.

    On a machine where both share the CPUs, a rate depends on both; each one's CPU time per unit
    of work is the figure that the other's share does not blur.
    """

    seconds: float
    server_cpu: float
    client_cpu: float
    other_cpu: dict[str, float] = field(default_factory=dict)
    """The target's :meth:`~loadgen.Target.other_cpu_seconds`, spent in the window."""

    def cpu_per(self, units: int, scale: float, suffix: str) -> Sample:
        """``server_cpu_<suffix>``, ``client_cpu_<suffix>`` and ``<other>_cpu_<suffix>``: CPU
        seconds x ``scale`` per unit."""
        units = max(units, 1)
        spent = {"server": self.server_cpu, "client": self.client_cpu, **self.other_cpu}
        return {f"{name}_cpu_{suffix}": scale * cpu / units for name, cpu in spent.items()}


class Stopwatch:
    """Started on making; :meth:`read` gives what was :class:`Spent` since."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._started = (time.monotonic(), target.cpu_seconds(), time.process_time())
        self._others = target.other_cpu_seconds()

    def read(self) -> Spent:
        wall, server, client = self._started
        others = self._target.other_cpu_seconds()
        return Spent(
            time.monotonic() - wall,
            self._target.cpu_seconds() - server,
            time.process_time() - client,
            {name: others[name] - self._others[name] for name in others.keys() & self._others.keys()},
        )


async def churn(target: Target, seconds: float, concurrency: int) -> Sample:
    """Connect, wait for the welcome, close with a handshake: completed cycles per second, and
    the server's and the load client's CPU time per cycle."""
    users = [f"churn-{worker}" for worker in range(concurrency)]
    target.prepare(users)
    completed = 0
    deadline = time.monotonic() + seconds

    async def cycle(user_id: str) -> None:
        nonlocal completed
        while time.monotonic() < deadline:
            link = await target.open(user_id)
            await link.close()
            completed += 1

    stopwatch = Stopwatch(target)
    await asyncio.gather(*(cycle(user_id) for user_id in users))
    spent = stopwatch.read()
    return {"cycles_per_s": completed / spent.seconds, **spent.cpu_per(completed, 1000, "ms_per_cycle")}


def cleanups(before: dict[float, float], after: dict[float, float]) -> dict[str, list[float]]:
    """How many cleanups a cumulative histogram's two scrapes saw, and the least bucket bound
    that 99 % of them took at most (exact, where the interpolated p99 of Prometheus is not)."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = counts.get(math.inf, 0.0)
    if not total:
        return {}
    bound = min(bound for bound, count in counts.items() if count >= 0.99 * total)
    return {"churn.cleanup_p99_bound_ms": [1000 * bound], "churn.cleanups": [total]}


async def idle(target: Target, count: int, per_user: int) -> Sample:
    """Growth of the server's resident memory and asyncio tasks per idle open connection."""
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
        tasks_before, rss_before = (await quiet_counts(target, http))[target.tasks_key], target.rss()
        links = await open_many(target, lambda index: f"idle-{index // per_user}", count)
        await asyncio.sleep(2.0)
        rss_after, tasks_after = target.rss(), (await target.held(http))[target.tasks_key]
    await close_all(links)
    return {
        "rss_per_connection": (rss_after - rss_before) / count,
        "tasks_per_connection": (tasks_after - tasks_before) / count,
    }


@dataclass
class Delivery:
    """How long a fan-out took, from the first publish to the last event received, and each latency."""

    deliveries: int
    spent: Spent
    latencies: list[float] = field(default_factory=list)

    def rates(self) -> Sample:
        """Deliveries per second, and the server's CPU time (publish requests included) and the
        load client's per delivery."""
        return {
            "deliveries_per_s": self.deliveries / self.spent.seconds,
            **self.spent.cpu_per(self.deliveries, 1e6, "us_per_delivery"),
        }


async def fan_out(target: Target, links: dict[str, list[Link]], events: int, concurrency: int) -> Delivery:
    """Publish ``events`` user-level events to each user of ``links``; wait until every link has its own.

    Each event carries the time its publish request was sent (``time.monotonic``: the client both
    sends and receives, so no two clocks are compared); a link notes the latency on receipt.
    """
    latencies: list[float] = []

    async def consume(link: Link) -> None:
        for _ in range(events):
            data = await link.next_event()
            latencies.append(time.monotonic() - data["sent"])

    consumers = [asyncio.create_task(consume(link)) for group in links.values() for link in group]
    gate = asyncio.Semaphore(concurrency)
    try:
        async with target.publisher(concurrency) as publish:

            async def publish_one(user_id: str, number: int) -> None:
                async with gate:
                    await publish(user_id, {"n": number, "sent": time.monotonic()})

            stopwatch = Stopwatch(target)
            await asyncio.gather(*(publish_one(user_id, n) for n in range(events) for user_id in links))
            await asyncio.wait_for(asyncio.gather(*consumers), timeout=DELIVERY_TIMEOUT)
            spent = stopwatch.read()
    finally:
        for consumer in consumers:
            consumer.cancel()
    return Delivery(len(consumers) * events, spent, latencies)


def by_user(links: list[Link], per_user: int, prefix: str) -> dict[str, list[Link]]:
    """The links opened with ``user_of = f"{prefix}-{index // per_user}"``, grouped by user."""
    grouped: dict[str, list[Link]] = {}
    for index, link in enumerate(links):
        grouped.setdefault(f"{prefix}-{index // per_user}", []).append(link)
    return grouped


async def fanout_one_user(target: Target, connections: int, events: int, concurrency: int) -> Sample:
    """Events published to one user, delivered to each of its connections: deliveries per second."""
    links = await open_many(target, lambda index: "fan-0", connections)
    delivery = await fan_out(target, by_user(links, connections, "fan"), events, concurrency)
    await close_all(links)
    return delivery.rates()


async def fanout_spread(target: Target, users: int, per_user: int, events: int, concurrency: int) -> Sample:
    """Events published to each of many users: deliveries per second, publish-to-delivery latency."""
    links = await open_many(target, lambda index: f"spread-{index // per_user}", users * per_user)
    delivery = await fan_out(target, by_user(links, per_user, "spread"), events, concurrency)
    await close_all(links)
    quantiles = statistics.quantiles(delivery.latencies, n=100, method="inclusive")
    return {
        **delivery.rates(),
        "latency_p50_ms": 1000 * quantiles[49],
        "latency_p99_ms": 1000 * quantiles[98],
    }


async def hold(
    target: Target,
    count: int,
    per_user: int,
    concurrency: int,
    timeout: float,
    on_reset: Callable[[float], None] | None = None,
) -> Sample:
    """Open ``count`` connections, fan one event out to all, drop them all by TCP reset.

    The server's resident memory and asyncio tasks per connection once every connection has its
    event: the growth of the tasks over the load, and of the memory over the server at rest
    (``target.rest_rss``, if :func:`warm_up` measured it; else just before the load). Memory that
    earlier figures' connections freed is reused here, so growth over the moment before the load
    would count only a fraction of what the held connections take.

    Two times from the first reset, each to the first scrape that shows it (``inf`` past
    ``timeout``): every count of connections, users and records back to 0 (``released_ms``),
    and also the asyncio tasks and descriptors back to their level before the load
    (``to_zero_ms``). ``on_reset`` is told when (``time.monotonic``) the first reset was sent.
    Both include the load client's own teardown, which sends the resets one by one on the same
    CPUs: ``teardown_ms`` is its time from the first reset to the last, and
    ``release_server_cpu_ms`` the server's CPU time from the first reset until the watch ended.
    """

    def user_of(index: int) -> str:
        return f"hold-{index // per_user}"

    target.prepare(dict.fromkeys(map(user_of, range(count))))
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
        baseline = await quiet_counts(target, http)
    # Closed here, not kept open beside the watcher's: the server's descriptors would stay one
    # over the baseline until the idle keep-alive connection timed out.
    rss_before = target.rss() if target.rest_rss is None else target.rest_rss
    started = time.monotonic()
    links = await open_many(target, user_of, count)
    opened = time.monotonic() - started
    delivery = await fan_out(target, by_user(links, per_user, "hold"), 1, concurrency)
    rss_held = target.rss()
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
        tasks_held = (await target.held(http))[target.tasks_key]
    with collector_paused():
        stopwatch = Stopwatch(target)
        aborted = time.monotonic()
        if on_reset is not None:
            on_reset(aborted)
        for link in links:
            link.abort()
        # A transport closes its socket, which sends the reset, in a callback of its abort; this
        # one runs after all of them.
        last_reset: list[float] = []
        asyncio.get_running_loop().call_soon(lambda: last_reset.append(time.monotonic()))
        released_at, settled_at = await asyncio.to_thread(watch_release, target, baseline, aborted + timeout)
        release = stopwatch.read()
    return {
        "open_per_s": count / opened,
        "fanout_ms": 1000 * delivery.spent.seconds,
        "rss_per_connection": (rss_held - rss_before) / count,
        "tasks_per_connection": (tasks_held - baseline[target.tasks_key]) / count,
        "released_ms": _since(aborted, released_at),
        "to_zero_ms": _since(aborted, settled_at),
        "teardown_ms": _since(aborted, last_reset[0] if last_reset else None),
        "release_server_cpu_ms": 1000 * release.server_cpu,
    }


def watch_release(target: Target, baseline: Counts, deadline: float) -> tuple[float | None, float | None]:
    """When the server first showed every connection released, then every count at its
    baseline. Scraped from a thread with a loop of its own, so that the scrapes need not wait
    for the load client's loop, busy with the teardown of its own side of the connections."""

    async def watch() -> tuple[float | None, float | None]:
        async with httpx.AsyncClient(base_url=target.server.base_url, timeout=30) as http:
            released_at = await first_time(target, http, released, deadline)
            settled_at = await first_time(target, http, lambda counts: settled(counts, baseline), deadline)
        return released_at, settled_at

    return asyncio.run(watch())


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in the load client while it times the server: a full collection
    over its own 10,000 connections would add hundreds of milliseconds to the server's figure."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _since(start: float, end: float | None) -> float:
    return 1000 * (end - start) if end is not None else math.inf


async def quiet_counts(target: Target, http: httpx.AsyncClient) -> Counts:
    """The counts before a load: the previous figure's connections gone, and its tasks too.

    Tasks may outlive their connection (python-engineio's ping task sleeps out its interval,
    25 s); they are waited for, up to ``QUIET_TIMEOUT``, so as not to count as the server's own.
    """
    await asyncio.sleep(1.0)
    rest, deadline = target.fewest_tasks, time.monotonic() + QUIET_TIMEOUT
    if await first_time(target, http, released, deadline) is None:
        raise RuntimeError(f"{target.name} still holds connections from the previous figure")
    await first_time(target, http, lambda counts: counts[target.tasks_key] <= rest, deadline)
    return await target.counts(http)


async def first_time(
    target: Target, http: httpx.AsyncClient, condition: Callable[[Counts], bool], deadline: float
) -> float | None:
    """When (``time.monotonic`` on receipt of the scrape) the counts first met ``condition``.

    None once ``deadline`` passed; what the server still held is printed then.
    """
    while True:
        counts = await target.counts(http)
        now = time.monotonic()
        if condition(counts):
            return now
        if now >= deadline:
            print(f"[{target.name}] still held at the deadline: {counts}", file=sys.stderr)
            return None
        await asyncio.sleep(POLL_INTERVAL)
