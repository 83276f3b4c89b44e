"""One connection's decisions, without I/O: what a delivery, a replay or an incoming frame sends,
whether an event was delivered already, and when the connection must close instead.

:class:`ConnectionState` is fed what happened and returns what to do: a frame to write, a
:class:`~wsguard.close.Close` to close with, or None for nothing. It never awaits, reads no clock
(the time is passed in) and holds nothing of the transport, so that the WebSocket connection of
:mod:`wsguard.runtime.connection` and any other transport writing the same frames under the same
limits (Server-Sent Events) drive the same rules, and a test drives them alone.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from wsguard import close
from wsguard.core import frames
from wsguard.core.ratelimit import TokenBucket
from wsguard.core.thread_log import Recovery
from wsguard.settings import Settings

RATE_LIMITED = frames.FrameError("rate_limited", "too many frames; slow down")
RATE_LIMITED_FRAME = frames.error_frame(RATE_LIMITED)
"""Encoded once: every refused frame is answered with the same text."""

_NO_THREADS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What bounds each connection; one instance is shared by all of a hub's connections."""

    queue_limit_bytes: int
    write_timeout: float
    close_timeout: float
    max_message_bytes: int
    message_rate: float
    max_subscriptions: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "ConnectionLimits":
        """The limits ``settings`` set: their defaults are the settings' own, written nowhere else."""
        return cls(
            queue_limit_bytes=settings.queue_limit_bytes,
            write_timeout=settings.write_timeout,
            close_timeout=settings.close_timeout,
            max_message_bytes=settings.max_message_bytes,
            message_rate=settings.message_rate_per_connection,
            max_subscriptions=settings.max_subscriptions_per_connection,
        )


class _Threads:
    """A connection's thread subscriptions, created at its first ``subscribe``: an idle
    connection that never subscribes holds none of this."""

    __slots__ = ("delivered_floor", "pending_bytes", "replaying", "subscriptions")

    def __init__(self) -> None:
        self.subscriptions: dict[str, int] = {}
        """Thread -> the last offset delivered."""
        self.replaying: dict[str, list[tuple[int, str]]] = {}
        """Thread whose history is being fetched -> its live events meanwhile."""
        self.pending_bytes = 0
        """The size of those live events, bounded by the queue limit."""
        self.delivered_floor: dict[str, int] = {}
        """Unsubscribed thread -> how far this connection got (the last few only)."""


class ConnectionState:
    """The subscriptions, delivered offsets and inbound rate of one connection, and every
    decision made from them.

    What an idle connection does not need (its subscriptions, its inbound rate bucket) is created
    when first needed, so that this object stays a few slots for most connections.
    """

    __slots__ = ("_inbound", "_refused_in_a_row", "_threads", "limits")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._threads: _Threads | None = None
        self._inbound: TokenBucket | None = None
        self._refused_in_a_row = 0

    # Outbound

    def admit(self, frame: str, unsent: int) -> close.Close | None:
        """Whether ``frame`` may join the ``unsent`` bytes already waiting for the peer; past the
        queue limit the connection must close as a slow consumer (4008) instead of growing."""
        if unsent + frames.utf8_size(frame) > self.limits.queue_limit_bytes:
            return close.SLOW_CONSUMER
        return None

    # Inbound

    def receive(self, text: str, now: float) -> str | close.Close | None:
        """A text frame came in at ``now`` (monotonic seconds): None to handle it; else it is
        dropped, and this says what to do instead (a frame to answer with, or a close).

        Too large closes with 1009. Past the inbound rate, each frame is answered with a
        ``rate_limited`` error, and once a burst's worth were refused in a row the connection
        closes for a policy violation. The bucket is made at the first frame (full, as it
        would be).
        """
        if frames.utf8_size(text) > self.limits.max_message_bytes:
            return close.TOO_BIG
        rate = self.limits.message_rate
        if not rate:
            return None
        if self._inbound is None:
            self._inbound = TokenBucket(rate, 2 * rate, 2 * rate, now)
        if self._inbound.take(now):
            self._refused_in_a_row = 0
            return None
        self._refused_in_a_row += 1
        if self._refused_in_a_row > self._inbound.burst:
            return close.POLICY_VIOLATION
        return RATE_LIMITED_FRAME

    # Subscriptions

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Subscribed thread -> the last offset delivered to this connection."""
        return self._threads.subscriptions if self._threads is not None else _NO_THREADS

    @property
    def pending_threads(self) -> tuple[str, ...]:
        """Threads whose history is being fetched."""
        return tuple(self._threads.replaying) if self._threads is not None else ()

    def threads(self) -> tuple[str, ...]:
        """Every thread subscribed or being fetched (one in both is named twice): what to
        release when the connection ends."""
        threads = self._threads
        if threads is None:
            return ()
        return (*threads.subscriptions, *threads.replaying)

    def may_subscribe(self, thread_id: str) -> bool:
        """A thread already subscribed (or being fetched) always; a new one while under the cap."""
        threads = self._threads
        if threads is None:
            return self.limits.max_subscriptions > 0
        if thread_id in threads.subscriptions or thread_id in threads.replaying:
            return True
        return len(threads.subscriptions) + len(threads.replaying) < self.limits.max_subscriptions

    def begin_subscription(self, thread_id: str) -> None:
        """Start buffering the thread's live events while its history is fetched."""
        if self._threads is None:
            self._threads = _Threads()
        self._threads.replaying.setdefault(thread_id, [])

    def restart_thread(self, thread_id: str) -> None:
        """The thread's offsets start from 1 again (a new epoch): take them from there."""
        if self._threads is not None and thread_id in self._threads.subscriptions:
            self._threads.subscriptions[thread_id] = 0

    def thread_event(self, offset: int | None, frame: str, thread_id: str) -> str | close.Close | None:
        """A live event of one of the user's threads: the frame to send, at most once per
        connection and in offset order; None when it is not for this connection, was delivered
        already, or is held until the thread's replay is sent. Held events past the queue limit
        close the connection (4008)."""
        threads = self._threads
        if threads is None:
            return None
        pending = threads.replaying.get(thread_id)
        if pending is not None:
            threads.pending_bytes += frames.utf8_size(frame)
            if threads.pending_bytes > self.limits.queue_limit_bytes:
                return close.SLOW_CONSUMER
            pending.append((offset or 0, frame))
            return None
        subscriptions = threads.subscriptions
        last = subscriptions.get(thread_id)
        if last is None:
            return None
        if offset is not None and offset <= last:
            return None
        subscriptions[thread_id] = offset or last
        return frame

    def replay(self, thread_id: str, recovery: Recovery, ref: frames.Ref = None) -> list[str] | None:
        """The thread's history is fetched: the frames to send, in order, before its live events.

        The retained events this connection has not had (they count as delivered from now on:
        neither a live event nor a later replay repeats them), then ``subscribed``. None when
        the subscription ended while the history was fetched: nothing is sent.
        """
        threads = self._threads
        if threads is None or thread_id not in threads.replaying:
            return None
        floor = max(threads.subscriptions.get(thread_id, 0), threads.delivered_floor.pop(thread_id, 0))
        sending: list[str] = []
        for retained in recovery.frames:
            if retained.offset > floor:
                sending.append(retained.frame)
                floor = retained.offset
        threads.subscriptions[thread_id] = floor
        subscribed = frames.encode(
            "subscribed",
            ref,
            thread_id=thread_id,
            epoch=recovery.epoch,
            offset=recovery.last_offset,
            recovered=recovery.recovered,
            replayed=len(sending),
        )
        sending.append(subscribed)
        return sending

    def end_replay(self, thread_id: str) -> list[str]:
        """The replay was sent: the live events held meanwhile that this connection has not had,
        to send now, in the order they arrived; the thread's events are sent as they come from
        here on."""
        threads = self._threads
        if threads is None:
            return []
        held = threads.replaying.pop(thread_id, None)
        if not held:
            return []
        sending: list[str] = []
        for offset, frame in held:
            threads.pending_bytes -= frames.utf8_size(frame)
            live = self.thread_event(offset, frame, thread_id)
            if isinstance(live, str):
                sending.append(live)
        return sending

    def end_subscription(self, thread_id: str) -> None:
        """Stop the thread; remember how far this connection got, so a resubscribe never repeats.

        Only the last ``max_subscriptions`` unsubscribed threads are remembered (the oldest is
        forgotten first), so that subscribing and unsubscribing cannot grow the connection.
        """
        threads = self._threads
        if threads is None:
            return
        for _, frame in threads.replaying.pop(thread_id, []):
            threads.pending_bytes -= frames.utf8_size(frame)
        floor = threads.subscriptions.pop(thread_id, None)
        if floor:
            remembered = threads.delivered_floor
            remembered.pop(thread_id, None)
            remembered[thread_id] = floor
            if len(remembered) > self.limits.max_subscriptions:
                del remembered[next(iter(remembered))]
