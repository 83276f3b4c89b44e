"""Prometheus series of docs/protocol.md section 7, on a registry of the server's own.

Counters and the histogram are updated where things happen; the gauges are read from the live
state at scrape time, so that they cannot drift from it. So is the count of frames delivered,
an integer of the hub: it moves once per connection per event, where a Prometheus counter's
lock and checks would be a tenth of a delivery's cost.
"""

import asyncio
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsguard.backends.base import BackendTraffic

CLEANUP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The live counts that the gauges report."""

    connections: int
    users: int
    user_connections_max: int
    registry_entries: int
    thread_logs: int
    backend_up: bool
    backend: BackendTraffic = field(default_factory=BackendTraffic)
    events_delivered: int = 0
    sockets: int = 0
    streams: int = 0
    """Connections held, by transport: WebSockets, and event streams (Server-Sent Events)."""


class _LiveGauges(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        now = self._snapshot()
        yield GaugeMetricFamily(
            "wsguard_connections_active", "Connections open on this instance.", now.connections
        )
        transports = GaugeMetricFamily(
            "wsguard_transport_connections",
            "Connections open on this instance, by transport.",
            labels=["transport"],
        )
        transports.add_metric(["websocket"], now.sockets)
        transports.add_metric(["sse"], now.streams)
        yield transports
        yield GaugeMetricFamily("wsguard_users_active", "Users with at least one open connection.", now.users)
        yield GaugeMetricFamily(
            "wsguard_user_connections_max",
            "The most connections any one user holds now.",
            now.user_connections_max,
        )
        yield GaugeMetricFamily(
            "wsguard_registry_entries",
            "Per-connection records held, all structures together.",
            now.registry_entries,
        )
        yield GaugeMetricFamily("wsguard_thread_logs", "Thread logs held for replay.", now.thread_logs)
        yield GaugeMetricFamily("wsguard_backend_up", "1 when the backend is reachable.", int(now.backend_up))
        yield CounterMetricFamily(
            "wsguard_events_delivered", "Event frames written to connections.", now.events_delivered
        )
        yield CounterMetricFamily(
            "wsguard_backend_messages_received",
            "Events this instance received from the backend (the cost of fan-in).",
            now.backend.messages_received,
        )
        subscriptions = GaugeMetricFamily(
            "wsguard_backend_subscriptions",
            "Backend channels this instance listens to, by kind (user: one per user held here).",
            labels=["kind"],
        )
        subscriptions.add_metric(["user"], now.backend.user_channels)
        subscriptions.add_metric(["control"], now.backend.control_channels)
        yield subscriptions
        changes = CounterMetricFamily(
            "wsguard_backend_subscription_changes",
            "Users' channels joined and left, as Redis confirmed them.",
            labels=["change"],
        )
        changes.add_metric(["join"], now.backend.joins)
        changes.add_metric(["leave"], now.backend.leaves)
        yield changes
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:
            tasks = 0
        yield GaugeMetricFamily("wsguard_tasks_active", "asyncio tasks alive in the server's loop.", tasks)
        yield GaugeMetricFamily(
            "wsguard_python_allocated_blocks",
            "sys.getallocatedblocks(), the exact allocation count.",
            sys.getallocatedblocks(),
        )


class Metrics:
    """The server's counters and histogram, and the scrape of all series."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.opened = Counter("wsguard_connections_opened", "Connections admitted.", registry=registry)
        self.closed = Counter(
            "wsguard_connections_closed",
            "Connections closed, by reason.",
            ["reason"],
            registry=registry,
        )
        self._closed_by_reason: dict[str, Counter] = {}
        self.evictions = Counter(
            "wsguard_limit_evictions",
            "Connections evicted by the per-user limit.",
            registry=registry,
        )
        self.rejections = Counter(
            "wsguard_limit_rejections",
            "Connections rejected by the per-user limit.",
            registry=registry,
        )
        self.zombies_reaped = Counter(
            "wsguard_zombies_reaped", "Connections closed by the heartbeat.", registry=registry
        )
        self.sweeper_repairs = Counter(
            "wsguard_sweeper_repairs", "Records the sweeper had to fix.", registry=registry
        )
        self.cleanup_seconds = Histogram(
            "wsguard_cleanup_seconds",
            "From the server learning that the socket closed to the connection fully released.",
            buckets=CLEANUP_BUCKETS,
            registry=registry,
        )
        self.background_errors = Counter(
            "wsguard_background_errors",
            "Unexpected exceptions a background task survived, by task.",
            ["task"],
            registry=registry,
        )
        self.events_published = Counter("wsguard_events_published", "Events published.", registry=registry)
        registry.register(_LiveGauges(snapshot))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

    def count_closed(self, reason: str) -> None:
        """One more connection closed for ``reason``. Each reason's child is kept (the reasons
        are the few of :mod:`wsguard.close`): ``labels`` checks and converts its argument on
        every call, about 3 % of the server's CPU while it releases a mass drop."""
        child = self._closed_by_reason.get(reason)
        if child is None:
            child = self._closed_by_reason[reason] = self.closed.labels(reason)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
