"""The state of the server's HTTP edge: connections not yet upgraded, refusals, descriptors.

One :class:`Edge` per server, shared by every HTTP connection. It decides whether a new TCP
connection may stay (the descriptor reserve, the cap on unfinished connections per peer
address), counts every connection refused or timed out by reason, and renders those counts as
Prometheus series. The app finds it in ``scope["extensions"]["wsguard.edge"]`` of each HTTP
request (``/metrics`` and ``/readyz`` use it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client import Counter as PromCounter
from uvicorn.middleware.proxy_headers import _TrustedHosts

from wsguard.settings import taken_from
from wsguard.transport.descriptors import DescriptorBudget, open_descriptors

EDGE_EXTENSION_KEY = "wsguard.edge"

REFUSAL_REASONS = (
    "bad_request",
    "line_too_long",
    "too_many_headers",
    "head_too_large",
    "header_timeout",
    "idle_timeout",
    "pending_per_address",
    "descriptors",
)
"""Every label of ``wsguard_http_refused_total``; each is reported from the start, at 0."""


@dataclass(frozen=True)
class EdgeLimits:
    """The edge's settings (their defaults are ``wsguard serve``'s)."""

    header_timeout: float = taken_from("header_timeout")
    """Seconds from the connection (or the first byte of a later request) to a complete head."""
    keep_alive_timeout: float = taken_from("keep_alive_timeout")
    """Seconds an HTTP connection may sit idle between requests."""
    max_pending_per_address: int = taken_from("max_pending_per_address")
    """Connections one peer address may hold before their upgrade; 0 turns the cap off."""
    forwarded_allow_ips: str = taken_from("forwarded_allow_ips")
    """Peers exempt from the cap: load balancers, through which every client arrives."""


@dataclass
class Edge:
    """Admission of new connections, and the counts of what the edge refused."""

    limits: EdgeLimits = field(default_factory=EdgeLimits)
    budget: DescriptorBudget = field(default_factory=DescriptorBudget.current)

    def __post_init__(self) -> None:
        self._exempt = _TrustedHosts(self.limits.forwarded_allow_ips)
        self._pending: Counter[str] = Counter()
        self.registry = CollectorRegistry()
        self._refused = PromCounter(
            "wsguard_http_refused",
            "Connections the HTTP edge refused or timed out before an upgrade, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason)
        pending = Gauge(
            "wsguard_http_pending_connections",
            "TCP connections open that have not been upgraded to a WebSocket.",
            registry=self.registry,
        )
        pending.set_function(lambda: sum(self._pending.values()))

    def admit(self, address: str | None, descriptor: int | None) -> str | None:
        """Take a new connection's place, or return the reason it must be closed at once."""
        if descriptor is not None and self.budget.refuses(descriptor):
            return self.refuse("descriptors")
        key = address or ""
        cap = self.limits.max_pending_per_address
        if cap and address is not None and address not in self._exempt and self._pending[key] >= cap:
            return self.refuse("pending_per_address")
        self._pending[key] += 1
        return None

    def release(self, address: str | None) -> None:
        """The connection admitted for ``address`` was upgraded or closed."""
        key = address or ""
        self._pending[key] -= 1
        if self._pending[key] <= 0:
            del self._pending[key]

    def refuse(self, reason: str) -> str:
        """Count one refusal; returns ``reason``."""
        self._refused.labels(reason).inc()
        return reason

    def pending(self, address: str | None) -> int:
        return self._pending.get(address or "", 0)

    def descriptors_low(self) -> bool:
        """True when fewer than two reserves of descriptors are left (``/readyz`` answers 503)."""
        count = open_descriptors()
        return count is not None and self.budget.low(count)

    def render(self) -> bytes:
        """The edge's series in the Prometheus text format."""
        return generate_latest(self.registry)
