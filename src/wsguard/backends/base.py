"""The small interface every backend implements."""

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from wsguard.backends.presence import ClusterDirectory
from wsguard.context import EventIds, RunContext
from wsguard.core.frames import Since
from wsguard.core.thread_log import History, Recovery, ThreadKey
from wsguard.errors import WSGuardError


@dataclass(frozen=True, slots=True)
class Envelope:
    """A published event on its way to the connections: whose, which thread, and the wire frame."""

    user_id: str
    thread_id: str | None
    offset: int | None
    """The event's offset in its thread; None for a user-level event."""
    frame: str


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published event stands in its thread, so that the publisher can hand the
    position on (``since: {epoch, offset}`` resumes after it) and tell a retry from a new event."""

    offset: int | None
    """The event's offset in its thread: 1, 2, ... per thread; None for a user-level event (no
    thread), which is neither numbered nor retained."""
    epoch: str
    """The epoch of the thread's numbering, as the event frame carries it: a new one means the
    numbering started again, and an offset is compared only within one epoch."""
    duplicate: bool = False
    """Its idempotency key was seen within the window: nothing was published again, and
    ``offset`` and ``epoch`` are the first publish's."""


Deliver = Callable[[Envelope], None]


@dataclass(frozen=True, slots=True)
class BackendTraffic:
    """What this instance gets from the backend and listens to, so that fan-in has a visible cost."""

    messages_received: int = 0
    """Events received from the backend since start (by all its channels)."""
    user_channels: int = 0
    """Users' event channels subscribed to now."""
    control_channels: int = 0
    """The instance's own channels (0 when not listening)."""
    joins: int = 0
    leaves: int = 0


class BackendUnavailable(WSGuardError, RuntimeError):
    """The backend cannot take the event now; the caller answers 503 rather than lose it."""


@dataclass(frozen=True, slots=True)
class ClusterClose:
    """A connection the cluster decided to close, and the instance that holds it."""

    connection_id: str
    instance_id: str
    replaced: bool
    """Closed because a new connection resumed its session (4002 ``replaced``), not over the
    user's limit (4001 ``superseded``)."""
    here: bool
    """Held by this instance, which closes it itself; the others were sent to their instance."""

    @property
    def superseded(self) -> bool:
        """Closed over the user's limit (4001 ``superseded``)."""
        return not self.replaced


@dataclass(frozen=True, slots=True)
class ClusterDecision:
    """A cluster-wide admission: whether the new connection may stay, and who must go.

    Closes of connections on other instances are already sent to them; ``here`` marks the
    ones this instance must close itself.
    """

    admitted: bool
    closes: tuple[ClusterClose, ...] = ()


class ClusterMember(Protocol):
    """What a clustered backend asks of the hub that owns this instance's connections."""

    def close_connection(self, connection_id: str, *, replaced: bool) -> bool:
        """Close a connection of this instance (4002 if ``replaced``, else 4001); False if unknown."""
        ...

    def disconnect(self, connection_id: str) -> bool:
        """Close a connection of this instance with 4003 (an admin asked); False if unknown."""
        ...

    def command(self, connection_id: str, user_id: str, text: str) -> None:
        """A command another instance took for a stream of this one (an SSE ``POST``)."""
        ...

    def subscribed_threads(self) -> Collection[ThreadKey]:
        """The threads that connections of this instance are subscribed to."""
        ...

    def reset_thread(self, key: ThreadKey) -> None:
        """The thread's numbering restarted (a new epoch): forget the offsets its subscribers saw."""
        ...

    def background_error(self, task: str, error: BaseException) -> None:
        """A background task met an unexpected exception and goes on: log it and count it."""
        ...


class Backend(Protocol):
    """Numbers, retains and fans out events; answers recovery questions."""

    @property
    def up(self) -> bool:
        """Whether the backend can take events now."""
        ...

    async def start(self, deliver: Deliver, member: ClusterMember | None = None) -> None:
        """Begin delivering published events (from any instance) to ``deliver``."""
        ...

    async def admit(
        self, user_id: str, connection_id: str, session_id: str, *, takeover: bool
    ) -> ClusterDecision | None:
        """Decide a new connection cluster-wide; None leaves the decision to the local registry."""
        ...

    def release(self, connection_id: str) -> None:
        """The connection is gone; never blocks, and releasing twice is harmless."""
        ...

    async def close(self) -> None:
        """Stop delivering and let go of what the backend holds (Redis: its leases and client)."""
        ...

    async def publish(
        self,
        user_id: str,
        thread_id: str | None,
        event: str,
        data: dict[str, Any],
        run: RunContext | EventIds | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Published:
        """Number, retain and deliver one event; user-level events (no thread) are not retained.
        The same ``idempotency_key`` for the same user and thread within its window publishes
        nothing and returns the first publish's offset (``duplicate``)."""
        ...

    async def recover(self, user_id: str, thread_id: str, since: Since | None) -> Recovery:
        """What a subscriber of the thread that last saw ``since`` must be replayed."""
        ...

    async def history(self, user_id: str, thread_id: str, after: int, limit: int) -> History:
        """Up to ``limit`` retained events of the thread after offset ``after``, on any instance.
        Raises :class:`BackendUnavailable` when they cannot be read."""
        ...

    def expire(self, now: float) -> None:
        """Drop retained events (and, in one process, tickets) past their age."""
        ...

    async def issue_ticket(
        self, ticket: str, user_id: str, payload: str, ttl: float, max_per_user: int
    ) -> bool:
        """Keep a one-time ticket for ``ttl`` seconds, where every instance can redeem it; False
        (nothing kept) when the user already holds ``max_per_user`` unused ones (0 = no cap).
        Raises :class:`BackendUnavailable` when it cannot be kept."""
        ...

    async def redeem_ticket(self, ticket: str) -> str | None:
        """Take a ticket: its payload to the first caller on any instance, None to every other
        and for an unknown or expired one. Raises :class:`BackendUnavailable` when the backend
        cannot tell (the upgrade is refused with 503, never admitted on a guess)."""
        ...

    async def shared_key(self, name: str, candidate: bytes) -> bytes | None:
        """The secret ``name`` every instance of this backend uses: ``candidate`` when none was
        set yet, else the one set first. None when the backend is one process (nothing to
        share). Raises :class:`BackendUnavailable` when it cannot be read."""
        ...

    @property
    def thread_log_count(self) -> int:
        """Thread logs held in this process for replay (0 when the backend keeps them elsewhere)."""
        ...

    @property
    def directory(self) -> ClusterDirectory | None:
        """The cluster's presence and instances; None on one process (the hub's registry is all)."""
        ...

    @property
    def entry_count(self) -> int:
        """Per-connection records the backend holds in this process (0 when nothing is connected)."""
        ...

    @property
    def traffic(self) -> BackendTraffic:
        """Messages received and channels held; zeros for a backend without channels."""
        ...
