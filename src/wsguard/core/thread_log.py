"""Per-thread event numbering and retention, and the recovery decision for ``subscribe`` with ``since``.

Offsets start at 1 and grow by 1 per event of a thread. A log keeps at most ``max_events``
events for at most ``max_age`` seconds; once empty it is dropped, leaving only its epoch and last
offset behind (a few bytes) so that numbering continues. What is left behind is itself bounded:
it is kept ``remember_for`` seconds after the log expired (``max_age`` by default) and for at
most ``max_remembered`` threads, the oldest forgotten first. A thread forgotten this way starts
again at 1 in a new epoch, so a client that recovers with the old epoch learns that it cannot.

The epoch is per thread: the store's epoch (new on every start) while nothing was ever forgotten,
then the store's epoch with a generation that changes on every forgetting.
"""

from collections import deque
from collections.abc import Iterable
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


@dataclass(frozen=True, slots=True)
class History:
    """A thread's retained events after an offset: what a page draws before it subscribes."""

    epoch: str
    last_offset: int
    events: tuple[Retained, ...]
    """At most the limit asked for, in offset order."""
    complete: bool
    """False when events after the offset asked for are no longer retained, or the offset is past
    the thread's last one (a number of another epoch): the caller cannot go on from it."""


def history_of(epoch: str, last_offset: int, retained: Iterable[Retained], after: int, limit: int) -> History:
    """The same rule for every backend: ``retained`` are the unexpired events, in offset order."""
    kept: list[Retained] = []
    for event in retained:
        if event.offset > after:
            kept.append(event)
            if len(kept) == limit:
                break
    gapless = bool(kept) and kept[0].offset == after + 1
    return History(epoch, last_offset, tuple(kept), after == last_offset or (after < last_offset and gapless))


@dataclass(slots=True)
class _Log:
    epoch: str
    events: deque[Retained]


@dataclass(frozen=True, slots=True)
class _Remembered:
    """What an expired log leaves behind, and since when."""

    epoch: str
    last_offset: int
    since: float


ThreadKey = tuple[str, str]
"""(user_id, thread_id): a thread is always one user's; the key of every per-thread record."""

REMEMBERED_THREADS = 10_000
"""How many expired threads keep their last offset at most (the oldest is forgotten first)."""


class ThreadLogs:
    """All thread logs of one store, keyed by (user_id, thread_id)."""

    def __init__(
        self,
        epoch: str,
        max_events: int,
        max_age: float,
        *,
        max_remembered: int = REMEMBERED_THREADS,
        remember_for: float | None = None,
    ) -> None:
        self.epoch = epoch
        self.max_events = max_events
        self.max_age = max_age
        self.max_remembered = max_remembered
        self.remember_for = max_age if remember_for is None else remember_for
        self._logs: dict[ThreadKey, _Log] = {}
        self._remembered: dict[ThreadKey, _Remembered] = {}
        self._forgotten = 0
        self._fresh_epoch = epoch

    def epoch_of(self, key: ThreadKey) -> str:
        """The epoch the thread's offsets are counted in (a new thread's, if it has none)."""
        log = self._logs.get(key)
        if log is not None:
            return log.epoch
        remembered = self._remembered.get(key)
        return remembered.epoch if remembered is not None else self._fresh_epoch

    def next_offset(self, key: ThreadKey) -> int:
        return self.last_offset(key) + 1

    def is_new(self, key: ThreadKey) -> bool:
        """No events and nothing remembered: the next event starts the thread's numbering."""
        return key not in self._logs and key not in self._remembered

    def append(self, key: ThreadKey, offset: int, frame: str, now: float) -> None:
        """Store the event numbered ``offset`` (from :meth:`next_offset`)."""
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log(self.epoch_of(key), deque(maxlen=self.max_events))
            self._remembered.pop(key, None)
        log.events.append(Retained(offset, now, frame))

    def last_offset(self, key: ThreadKey) -> int:
        log = self._logs.get(key)
        if log is not None:
            return log.events[-1].offset
        remembered = self._remembered.get(key)
        return remembered.last_offset if remembered is not None else 0

    def recover(self, key: ThreadKey, epoch: str | None, after: int | None, now: float) -> Recovery:
        """Decide what a subscriber that last saw ``(epoch, after)`` must be sent."""
        self._expire(key, now)
        current, last = self.epoch_of(key), self.last_offset(key)
        if epoch is None or after is None:
            return Recovery(current, last, False, ())
        if epoch != current or after > last:
            return Recovery(current, last, False, ())
        if after == last:
            return Recovery(current, last, True, ())
        log = self._logs.get(key)
        if log is None or log.events[0].offset > after + 1:
            return Recovery(current, last, False, ())
        frames = tuple(event for event in log.events if event.offset > after)
        return Recovery(current, last, True, frames)

    def history(self, key: ThreadKey, after: int, limit: int, now: float) -> History:
        """Up to ``limit`` retained events after ``after`` (see :func:`history_of`)."""
        self._expire(key, now)
        log = self._logs.get(key)
        events = log.events if log is not None else ()
        return history_of(self.epoch_of(key), self.last_offset(key), events, after, limit)

    def _expire(self, key: ThreadKey, now: float) -> None:
        log = self._logs.get(key)
        if log is None:
            return
        horizon = now - self.max_age
        if log.events[-1].stored_at > horizon:
            while log.events[0].stored_at <= horizon:
                log.events.popleft()
            return
        del self._logs[key]
        self._remembered[key] = _Remembered(log.epoch, log.events[-1].offset, now)
        if len(self._remembered) > self.max_remembered:
            del self._remembered[next(iter(self._remembered))]
            self._forget_one()

    def _forget_one(self) -> None:
        """A thread lost its numbering: threads started from now on get a new epoch."""
        self._forgotten += 1
        self._fresh_epoch = f"{self.epoch}.{self._forgotten}"

    def expire_all(self, now: float) -> None:
        """Drop what has aged out of every log, and what expired logs left behind for too long."""
        for key in list(self._logs):
            self._expire(key, now)
        horizon = now - self.remember_for
        stale = []
        for key, remembered in self._remembered.items():
            if remembered.since > horizon:
                break
            stale.append(key)
        for key in stale:
            del self._remembered[key]
        if stale:
            self._forget_one()

    @property
    def log_count(self) -> int:
        return len(self._logs)

    @property
    def remembered_count(self) -> int:
        return len(self._remembered)
