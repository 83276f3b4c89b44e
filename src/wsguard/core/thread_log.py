"""Per-thread event numbering and retention, and the recovery decision for ``subscribe`` with ``since``.

Offsets start at 1 and grow by 1 per event of a thread. A log keeps at most ``max_events``
events for at most ``max_age`` seconds; once empty it is dropped, leaving only its last offset
behind (a few bytes) so that numbering continues. The epoch is one per log store: a store that
lost its history (a restart) has a new epoch, and clients learn that they cannot recover.
"""

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Retained:
    """One stored event: its offset, when it was stored (monotonic seconds) and its wire frame."""

    offset: int
    stored_at: float
    frame: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """What to replay for a ``since``: the frames in offset order and whether nothing was lost."""

    epoch: str
    last_offset: int
    recovered: bool
    frames: tuple[Retained, ...]


@dataclass(slots=True)
class _Log:
    events: deque[Retained]


ThreadKey = tuple[str, str]
"""(user_id, thread_id): a thread is always one user's; the key of every per-thread record."""


class ThreadLogs:
    """All thread logs of one store, keyed by (user_id, thread_id)."""

    def __init__(self, epoch: str, max_events: int, max_age: float) -> None:
        self.epoch = epoch
        self.max_events = max_events
        self.max_age = max_age
        self._logs: dict[ThreadKey, _Log] = {}
        self._last_offsets: dict[ThreadKey, int] = {}

    def next_offset(self, key: ThreadKey) -> int:
        return self._last_offsets.get(key, 0) + 1

    def append(self, key: ThreadKey, offset: int, frame: str, now: float) -> None:
        """Store the event numbered ``offset`` (from :meth:`next_offset`)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log(deque(maxlen=self.max_events))
        log.events.append(Retained(offset, now, frame))
        self._last_offsets[key] = offset

    def last_offset(self, key: ThreadKey) -> int:
        return self._last_offsets.get(key, 0)

    def recover(self, key: ThreadKey, epoch: str | None, after: int | None, now: float) -> Recovery:
        """Decide what a subscriber that last saw ``(epoch, after)`` must be sent."""
        self._expire(key, now)
        last = self.last_offset(key)
        if epoch is None or after is None:
            return Recovery(self.epoch, last, False, ())
        if epoch != self.epoch or after > last:
            return Recovery(self.epoch, last, False, ())
        if after == last:
            return Recovery(self.epoch, last, True, ())
        log = self._logs.get(key)
        if log is None or log.events[0].offset > after + 1:
            return Recovery(self.epoch, last, False, ())
        frames = tuple(event for event in log.events if event.offset > after)
        return Recovery(self.epoch, last, True, frames)

    def _expire(self, key: ThreadKey, now: float) -> None:
        log = self._logs.get(key)
        if log is None:
            return
        horizon = now - self.max_age
        while log.events and log.events[0].stored_at <= horizon:
            log.events.popleft()
        if not log.events:
            del self._logs[key]

    def expire_all(self, now: float) -> None:
        """Drop what has aged out of every log (the sweeper calls this)."""
        for key in list(self._logs):
            self._expire(key, now)

    @property
    def log_count(self) -> int:
        return len(self._logs)
