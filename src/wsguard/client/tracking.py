"""Per-thread positions: what to resubscribe with, and which events the application already has.

Synchronous and socket-free. The asyncio client feeds it every ``event`` and ``subscribed`` frame
and asks it for the ``subscribe`` commands to send after a reconnect; it answers with decisions
(deliver or drop, recovery failed or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsguard.core.frames import Event, Position, Subscribed


@dataclass(frozen=True)
class RecoveryFailed:
    """The server could not replay what this thread missed: the application must reload it.

    ``asked`` is the position the client asked to resume from; ``position`` is where the thread
    stands now (deliveries continue after it).
    """

    thread_id: str
    asked: Position
    position: Position


@dataclass
class _Thread:
    subscribed: bool = False
    position: Position | None = None
    asked: Position | None = None


class ThreadTracker:
    """Remembers subscribed threads and the last offset delivered in each, and drops duplicates.

    An event is new when its thread has no position yet, when its epoch differs from the
    thread's (the stream was restarted), or when its offset is larger than the last one
    delivered. User-level events (no thread, no offset) cannot be deduplicated and always pass.
    """

    def __init__(self) -> None:
        self._threads: dict[str, _Thread] = {}
        self.duplicates_dropped = 0

    def subscribe(self, thread_id: str, since: Position | None = None) -> None:
        """Remember ``thread_id`` for resubscription; ``since`` seeds a position kept elsewhere."""
        thread = self._threads.setdefault(thread_id, _Thread())
        thread.subscribed = True
        if since is not None and (thread.position is None or thread.position.epoch != since.epoch):
            thread.position = since

    def unsubscribe(self, thread_id: str) -> None:
        """Forget ``thread_id``: it is not resubscribed, and its position is dropped."""
        self._threads.pop(thread_id, None)

    def __len__(self) -> int:
        """How many threads the tracker holds a record of."""
        return len(self._threads)

    def is_subscribed(self, thread_id: str) -> bool:
        thread = self._threads.get(thread_id)
        return thread is not None and thread.subscribed

    @property
    def subscriptions(self) -> list[str]:
        """Subscribed threads, in the order they were first subscribed."""
        return [thread_id for thread_id, thread in self._threads.items() if thread.subscribed]

    def position(self, thread_id: str) -> Position | None:
        """The epoch and last offset delivered for ``thread_id``, if any."""
        thread = self._threads.get(thread_id)
        return thread.position if thread is not None else None

    def subscribe_command(self, thread_id: str) -> dict[str, Any]:
        """The ``subscribe`` frame to send now, with ``since`` when a position is known."""
        thread = self._threads.setdefault(thread_id, _Thread(subscribed=True))
        command: dict[str, Any] = {"type": "subscribe", "thread_id": thread_id}
        thread.asked = thread.position
        if thread.position is not None:
            command["since"] = thread.position.as_since()
        return command

    def resubscribe_commands(self) -> list[dict[str, Any]]:
        """One ``subscribe`` per remembered thread, for a fresh connection."""
        return [self.subscribe_command(thread_id) for thread_id in self.subscriptions]

    def accept(self, event: Event) -> bool:
        """Whether ``event`` is new to the application; records it as delivered when it is."""
        if event.thread_id is None or event.offset is None or event.epoch is None:
            return True
        thread = self._threads.setdefault(event.thread_id, _Thread())
        current = thread.position
        if current is not None and current.epoch == event.epoch and event.offset <= current.offset:
            self.duplicates_dropped += 1
            return False
        thread.position = Position(event.epoch, event.offset)
        return True

    def on_subscribed(self, frame: Subscribed) -> RecoveryFailed | None:
        """Record the thread's position from ``subscribed``; report a failed recovery.

        A recovery failed when this subscription asked for ``since`` and the server answered
        ``recovered: false``. Then, as after a first subscription, the thread continues from
        the server's position, which is the ``since`` of the next resubscription. After a
        successful recovery the position stays what the replayed events made it.
        """
        thread = self._threads.setdefault(frame.thread_id, _Thread())
        asked, thread.asked = thread.asked, None
        server = Position(frame.epoch, frame.offset)
        current = thread.position
        behind = current is None or current.epoch != server.epoch or current.offset < server.offset
        if behind and (not frame.recovered or current is None):
            thread.position = server
        if asked is not None and not frame.recovered:
            return RecoveryFailed(frame.thread_id, asked, server)
        return None
