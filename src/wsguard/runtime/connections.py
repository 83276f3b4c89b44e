"""The index of this instance's open connections: by connection id, by user, by thread.

It holds records only: it never admits, closes, sends or awaits, which the hub does. By user
it answers from the registry's handles (in admission order), so that no second per-user record
is held for a connection.
"""

from collections.abc import Collection, Iterator

from wsguard.core.registry import Registry
from wsguard.core.thread_log import ThreadKey
from wsguard.runtime.connection import Connection

Subscribers = dict[str, Connection]
"""A thread's subscribed connections of this instance, by connection id."""


class Connections:
    """Where each open connection of this instance is found."""

    __slots__ = ("_by_id", "_registry", "by_thread", "streams")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._by_id: dict[str, Connection] = {}
        self.streams = 0
        """How many of them are event streams (the rest are sockets)."""
        self.by_thread: dict[ThreadKey, Subscribers] = {}
        """(user, thread) -> its subscribers: read directly on every delivery."""

    # By connection id

    def add(self, connection: Connection) -> None:
        self._by_id[connection.connection_id] = connection
        if connection.context.transport == "sse":
            self.streams += 1

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    def remove(self, connection: Connection) -> bool:
        """Forget ``connection`` if it is the one indexed under its id; True if it was."""
        if self._by_id.get(connection.connection_id) is not connection:
            return False
        del self._by_id[connection.connection_id]
        if connection.context.transport == "sse":
            self.streams -= 1
        return True

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._by_id.values())

    # By user

    def of_user(self, user_id: str) -> list[Connection]:
        """The user's open connections, oldest first."""
        found = (self._by_id.get(h.connection_id) for h in self._registry.handles_of(user_id))
        return [c for c in found if c is not None]

    # By thread

    def subscribe(self, connection: Connection, thread_id: str) -> None:
        """Index ``connection`` under its user's thread."""
        self.by_thread.setdefault((connection.user_id, thread_id), {})[connection.connection_id] = connection

    def unsubscribe(self, connection: Connection, thread_id: str) -> None:
        """Drop ``connection`` from its user's thread; a thread left without one is dropped."""
        key = (connection.user_id, thread_id)
        subscribers = self.by_thread.get(key)
        if subscribers is not None:
            subscribers.pop(connection.connection_id, None)
            if not subscribers:
                del self.by_thread[key]

    def subscribers(self, key: ThreadKey) -> Collection[Connection]:
        """The thread's subscribers of this instance (empty when none)."""
        found = self.by_thread.get(key)
        return found.values() if found is not None else ()

    def threads(self) -> tuple[ThreadKey, ...]:
        """Every thread with a subscriber here."""
        return tuple(self.by_thread)

    # Observation

    @property
    def entry_count(self) -> int:
        """Records held, by id and by thread together: 0 when nothing is connected."""
        return len(self._by_id) + sum(len(s) for s in self.by_thread.values())

    def drop_gone_subscribers(self) -> list[str]:
        """Drop every thread subscription of a connection no longer indexed by id (none ever
        should be); what was dropped, one line each."""
        dropped: list[str] = []
        for key, subscribers in list(self.by_thread.items()):
            for connection_id, connection in list(subscribers.items()):
                if self._by_id.get(connection_id) is not connection:
                    del subscribers[connection_id]
                    dropped.append(f"dropped subscription of gone {connection_id} to {key[1]}")
            if not subscribers:
                del self.by_thread[key]
        return dropped
