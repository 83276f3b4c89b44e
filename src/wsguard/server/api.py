"""What the HTTP endpoints (:mod:`~wsguard.server.http`, :mod:`~wsguard.server.admin`) work
with: the parts of one server they read, handed over once when the routes are made, so that
they depend on those parts rather than on the whole server (:mod:`wsguard.server.guard`)."""

from dataclasses import dataclass

from wsguard.backends.base import Backend
from wsguard.core.ratelimit import KeyedLimiter
from wsguard.runtime.hub import Hub
from wsguard.runtime.sweeper import Chore
from wsguard.server.admission import UpgradeGate
from wsguard.server.api_keys import ApiKeys
from wsguard.server.auth import Authenticate, TokenAuthority
from wsguard.server.feed import FeedSampler
from wsguard.server.instances import InstanceReporter
from wsguard.server.tickets import Tickets
from wsguard.settings import Settings


@dataclass(frozen=True, slots=True)
class Api:
    """One server's parts, as the endpoints see them."""

    settings: Settings
    hub: Hub
    backend: Backend
    identify: Authenticate
    """The caller of a request (a ``ticket`` counts only on an upgrade)."""
    api_keys: ApiKeys
    """Accepted on ``POST /api/publish`` and ``/api/admin/*`` (never on ``/ws``)."""
    tokens: TokenAuthority
    """Issues the ``--dev`` tokens of ``POST /api/dev/tokens``."""
    tickets: Tickets
    ticket_requests: KeyedLimiter
    """``POST /api/tickets``, per user."""
    run_starts: KeyedLimiter
    """``POST /api/threads/{thread_id}/runs``, per user."""
    demo_runs: bool
    """Whether runs may be started (:attr:`~wsguard.runtime.commands.CommandHooks.demo_runs`)."""
    reporter: InstanceReporter
    sampler: FeedSampler

    @property
    def prunes(self) -> tuple[Chore, Chore]:
        """The sweeper's chores for the endpoints' rate limits: run starts, then ticket requests."""
        return self.run_starts.prune, self.ticket_requests.prune

    @classmethod
    def create(
        cls, settings: Settings, gate: UpgradeGate, api_keys: ApiKeys, tokens: TokenAuthority, demo_runs: bool
    ) -> "Api":
        """Callers identified as the gate does, tickets it redeems, the rate limits only the
        endpoints apply, and the dashboard's reporter and sampler (the lifespan runs them)."""
        hub = gate.hub
        return cls(
            settings=settings,
            hub=hub,
            backend=hub.backend,
            identify=gate.identify,
            api_keys=api_keys,
            tokens=tokens,
            tickets=gate.tickets,
            ticket_requests=KeyedLimiter(settings.ticket_rate_per_user),
            run_starts=KeyedLimiter(settings.run_rate_per_user),
            demo_runs=demo_runs,
            reporter=InstanceReporter(hub, settings.lease_ttl),
            sampler=FeedSampler(hub),
        )
