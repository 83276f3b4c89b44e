"""Who holds which connection, and who must go when a user goes over the limit.

The registry never performs I/O and never awaits. :meth:`Registry.admit` returns an
:class:`Admission` that says which connections the caller must close and with which code; the
caller owns the returned :class:`Handle` and gives it back to :meth:`Registry.release`. Nothing
is ever looked up by a key recomputed from ids.
"""

from dataclasses import dataclass, field
from itertools import count

from wsguard.settings import LimitPolicy


@dataclass(frozen=True, slots=True)
class Handle:
    """Proof of admission; the only way to release a connection."""

    connection_id: str
    user_id: str
    session_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The decision for one new connection.

    ``handle`` is None when the connection was rejected. ``evicted`` (close with 4001) and
    ``replaced`` (close with 4002) are already released: they stop counting at once.
    """

    handle: Handle | None
    evicted: tuple[Handle, ...] = ()
    replaced: tuple[Handle, ...] = ()

    @property
    def rejected(self) -> bool:
        return self.handle is None


@dataclass(slots=True)
class _UserEntry:
    by_sequence: dict[int, Handle] = field(default_factory=dict)


class Registry:
    """The connections of every user on this instance, in admission order."""

    def __init__(self, max_per_user: int, policy: LimitPolicy) -> None:
        if max_per_user < 1:
            raise ValueError("max_per_user must be at least 1")
        self.max_per_user = max_per_user
        self.policy = policy
        self._sequence = count(1)
        self._users: dict[str, _UserEntry] = {}
        self._handles: dict[str, Handle] = {}

    def admit(
        self, user_id: str, connection_id: str, session_id: str, *, takeover: bool = False
    ) -> Admission:
        """Admit ``connection_id`` for ``user_id``, deciding evictions and takeovers.

        With ``takeover``, every open connection of ``session_id`` is replaced first, so a
        reconnecting client never waits for its half-open predecessor.
        """
        if connection_id in self._handles:
            raise ValueError(f"connection {connection_id} is already admitted")
        entry = self._users.get(user_id)
        replaced: tuple[Handle, ...] = ()
        if entry is not None and takeover:
            replaced = tuple(h for h in entry.by_sequence.values() if h.session_id == session_id)
            for handle in replaced:
                self.release(handle)
            entry = self._users.get(user_id)
        held = len(entry.by_sequence) if entry else 0
        if held >= self.max_per_user and self.policy is LimitPolicy.REJECT:
            return Admission(handle=None, replaced=replaced)
        handle = Handle(connection_id, user_id, session_id, next(self._sequence))
        if entry is None:
            entry = self._users[user_id] = _UserEntry()
        entry.by_sequence[handle.sequence] = handle
        self._handles[connection_id] = handle
        evicted: list[Handle] = []
        while len(entry.by_sequence) > self.max_per_user:
            oldest = entry.by_sequence[min(entry.by_sequence)]
            self.release(oldest)
            evicted.append(oldest)
        return Admission(handle=handle, evicted=tuple(evicted), replaced=replaced)

    def release(self, handle: Handle) -> bool:
        """Forget ``handle``; True if it was held. Releasing twice is harmless."""
        if self._handles.get(handle.connection_id) is not handle:
            return False
        del self._handles[handle.connection_id]
        entry = self._users[handle.user_id]
        del entry.by_sequence[handle.sequence]
        if not entry.by_sequence:
            del self._users[handle.user_id]
        return True

    def holds(self, handle: Handle) -> bool:
        return self._handles.get(handle.connection_id) is handle

    def handles_of(self, user_id: str) -> tuple[Handle, ...]:
        """The user's connections, oldest first."""
        entry = self._users.get(user_id)
        if entry is None:
            return ()
        return tuple(entry.by_sequence[s] for s in sorted(entry.by_sequence))

    def handles(self) -> tuple[Handle, ...]:
        return tuple(self._handles.values())

    @property
    def connection_count(self) -> int:
        return len(self._handles)

    @property
    def user_count(self) -> int:
        return len(self._users)

    @property
    def max_user_connections(self) -> int:
        return max((len(e.by_sequence) for e in self._users.values()), default=0)

    @property
    def entry_count(self) -> int:
        """Records held, both indexes together: 0 when nothing is connected."""
        return len(self._handles) + sum(len(e.by_sequence) for e in self._users.values())

    def invariant_violations(self) -> list[str]:
        """Every way the two indexes disagree; empty when the registry is sound."""
        problems: list[str] = []
        indexed = 0
        for user_id, entry in self._users.items():
            if not entry.by_sequence:
                problems.append(f"user {user_id} has an empty entry")
            if len(entry.by_sequence) > self.max_per_user:
                problems.append(f"user {user_id} holds {len(entry.by_sequence)} connections")
            for handle in entry.by_sequence.values():
                indexed += 1
                if self._handles.get(handle.connection_id) is not handle:
                    problems.append(f"{handle.connection_id} is indexed by user only")
        if indexed != len(self._handles):
            problems.append(f"{len(self._handles)} handles but {indexed} indexed by user")
        return problems
