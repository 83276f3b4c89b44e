"""The Redis backend's pure parts: what Lua scripts answer, when to renew, how long to back off.

Nothing here performs I/O, so it is all tested without Redis; the scripts in
:mod:`wsguard.backends.redis.scripts` are the atomic core on the Redis side.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote, unquote

from wsguard.backends.base import ClusterClose, ClusterDecision, Envelope
from wsguard.core.thread_log import History, Recovery, Retained, history_of


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Admission


def parse_admission(reply: Sequence[object], instance_id: str) -> tuple[ClusterDecision, str]:
    """Read the admit script's reply, ``[1, admitted_us, conn, instance, reason, ...]`` or
    ``[0, conn, instance, reason, ...]``; returns the decision and Redis's admission time."""
    admitted = int(_text(reply[0])) == 1
    admitted_us = _text(reply[1]) if admitted else ""
    closes = []
    rest = [_text(item) for item in reply[(2 if admitted else 1) :]]
    for start in range(0, len(rest), 3):
        connection_id, holder, reason = rest[start : start + 3]
        closes.append(ClusterClose(connection_id, holder, reason == "replaced", holder == instance_id))
    return ClusterDecision(admitted, tuple(closes)), admitted_us


# Leases held by this instance


@dataclass(slots=True)
class LocalLease:
    """What this instance knows of one of its connections' leases."""

    connection_id: str
    user_id: str
    session_id: str
    admitted_us: str = ""
    """Redis's clock at admission (microseconds); empty until Redis has admitted it."""


class RenewalOutcome(StrEnum):
    RENEWED = "renewed"
    RECREATED = "recreated"
    OVER = "over"
    """No lease and the user is at the limit: close the connection with 4001."""


@dataclass(slots=True)
class LeaseTable:
    """This instance's connections as leases, grouped by user for the renewal heartbeat."""

    _leases: dict[str, LocalLease] = field(default_factory=dict)

    def add(self, lease: LocalLease) -> None:
        self._leases[lease.connection_id] = lease

    def remove(self, connection_id: str) -> LocalLease | None:
        return self._leases.pop(connection_id, None)

    def get(self, connection_id: str) -> LocalLease | None:
        return self._leases.get(connection_id)

    def __len__(self) -> int:
        return len(self._leases)

    def by_user(self) -> dict[str, list[LocalLease]]:
        """Each user's leases, newest first, so that a lost lease is re-created for the newest."""
        grouped: dict[str, list[LocalLease]] = {}
        for lease in self._leases.values():
            grouped.setdefault(lease.user_id, []).append(lease)
        for leases in grouped.values():
            leases.sort(key=lambda lease: (lease.admitted_us == "", int(lease.admitted_us or 0)))
            leases.reverse()
        return grouped


def renewal_args(instance_id: str, ttl_ms: int, limit: int, leases: Iterable[LocalLease]) -> list[str]:
    """The renew script's ARGV for one user's leases, in the order given."""
    args = [instance_id, str(ttl_ms), str(limit)]
    for lease in leases:
        args += [lease.connection_id, lease.session_id, lease.admitted_us]
    return args


def parse_renewal(
    reply: Sequence[object], leases: Sequence[LocalLease]
) -> list[tuple[LocalLease, RenewalOutcome]]:
    """Pair each lease with what the renew script did to it."""
    if len(reply) != len(leases):
        raise ValueError(f"renewal answered {len(reply)} outcomes for {len(leases)} leases")
    return [(lease, RenewalOutcome(_text(outcome))) for lease, outcome in zip(leases, reply, strict=True)]


@dataclass(frozen=True, slots=True)
class RenewalSchedule:
    """Leases live ``ttl`` seconds and are renewed three times per ``ttl``, so that two lost
    renewals in a row still leave a live instance its leases."""

    ttl: float

    @property
    def interval(self) -> float:
        return self.ttl / 3

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))


# Events


@dataclass(frozen=True, slots=True)
class Message:
    """One event as it arrives on the events channel."""

    envelope: Envelope
    epoch: str


def parse_message(payload: bytes | str) -> Message:
    """``[user, thread, offset, epoch]\\n<frame>`` into an envelope."""
    text = _text(payload)
    header, _, frame = text.partition("\n")
    user_id, thread_id, offset, epoch = json.loads(header)
    return Message(Envelope(user_id, thread_id, offset, frame), epoch)


@dataclass(frozen=True, slots=True)
class ControlMessage:
    connection_id: str
    replaced: bool
    disconnected: bool = False
    """An admin closed it (4003), rather than the limit (4001) or a takeover (4002)."""
    command: tuple[str, str] | None = None
    """Not a close: the user and text of a command for the connection (an SSE stream)."""


def control_payload(connection_id: str, replaced: bool) -> str:
    return json.dumps({"close": connection_id, "reason": "replaced" if replaced else "superseded"})


def disconnect_payload(connection_id: str) -> str:
    return json.dumps({"close": connection_id, "reason": "disconnected_by_server"})


def command_payload(connection_id: str, user_id: str, text: str) -> str:
    return json.dumps({"command": connection_id, "user_id": user_id, "text": text})


def parse_control(payload: bytes | str) -> ControlMessage:
    body = json.loads(_text(payload))
    if "command" in body:
        return ControlMessage(str(body["command"]), False, command=(str(body["user_id"]), str(body["text"])))
    reason = body.get("reason")
    return ControlMessage(str(body["close"]), reason == "replaced", reason == "disconnected_by_server")


# Tickets and shared keys


def ticket_value(user_id: str, payload: str) -> str:
    """What a ticket's key holds: its user (percent-encoded, so it holds no newline), a newline,
    and the payload. The user tells which cap to give the ticket back to when it is redeemed."""
    return f"{quote(user_id, safe='')}\n{payload}"


def parse_ticket_value(value: bytes | str) -> tuple[str, str]:
    """The user and payload of :func:`ticket_value`; ValueError for anything else."""
    user, newline, payload = _text(value).partition("\n")
    if not newline or not user:
        raise ValueError("not a ticket value")
    return unquote(user), payload


def parse_shared_key(reply: object) -> bytes:
    """A shared secret as stored (hex); ValueError when it is not one of at least 16 bytes."""
    key = bytes.fromhex(_text(reply))
    if len(key) < 16:
        raise ValueError(f"a shared key of {len(key)} bytes")
    return key


# Recovery


@dataclass(frozen=True, slots=True)
class StreamRead:
    """The recover script's reply: the thread's epoch, last offset, Redis's clock and events."""

    epoch: str
    last_offset: int
    now_ms: int
    events: tuple[tuple[int, int, str], ...]
    """(offset, stored at in ms of Redis's clock, frame), in offset order."""


def parse_stream_read(reply: Sequence[object]) -> StreamRead:
    """``[epoch, last, now_ms, offset, stored_ms, frame, ...]``."""
    epoch, last, now_ms = _text(reply[0]), int(_text(reply[1])), int(_text(reply[2]))
    rest = reply[3:]
    events = tuple(
        (int(_text(rest[i])), int(_text(rest[i + 1])), _text(rest[i + 2])) for i in range(0, len(rest), 3)
    )
    return StreamRead(epoch, last, now_ms, events)


def decide_recovery(
    read: StreamRead, since_epoch: str | None, after: int | None, max_age_ms: int
) -> Recovery:
    """The same rule as the memory log: replay only a complete, unexpired, same-epoch tail."""
    if since_epoch is None or after is None:
        return Recovery(read.epoch, read.last_offset, False, ())
    if since_epoch != read.epoch or after > read.last_offset:
        return Recovery(read.epoch, read.last_offset, False, ())
    if after == read.last_offset:
        return Recovery(read.epoch, read.last_offset, True, ())
    horizon = read.now_ms - max_age_ms
    kept = [event for event in read.events if event[0] > after and event[1] > horizon]
    if not kept or kept[0][0] != after + 1 or kept[-1][0] != read.last_offset:
        return Recovery(read.epoch, read.last_offset, False, ())
    frames = tuple(Retained(offset, stored_ms / 1000, frame) for offset, stored_ms, frame in kept)
    return Recovery(read.epoch, read.last_offset, True, frames)


def decide_history(read: StreamRead, after: int, limit: int, max_age_ms: int) -> History:
    """The memory log's rule (:func:`~wsguard.core.thread_log.history_of`) on a stream read."""
    horizon = read.now_ms - max_age_ms
    unexpired = (
        Retained(offset, stored_ms / 1000, frame)
        for offset, stored_ms, frame in read.events
        if stored_ms > horizon
    )
    return history_of(read.epoch, read.last_offset, unexpired, after, limit)


@dataclass(slots=True)
class ThreadMarks:
    """How far this instance's subscribers of each thread have seen: the backfill's starting point,
    the epoch that tells a restarted numbering apart, and a digest of the last event seen, which
    tells whether Redis still holds the history the subscribers were given."""

    _marks: dict[tuple[str, str], tuple[str, int, int | None]] = field(default_factory=dict)

    def note(self, key: tuple[str, str], epoch: str, offset: int, frame: str | None = None) -> bool:
        """Record a seen offset (and the event's frame, when known); True when the epoch changed
        (the caller resets subscribers)."""
        known = self._marks.get(key)
        restarted = known is not None and known[0] != epoch
        if known is None or restarted or offset > known[1]:
            self._marks[key] = (epoch, offset, None if frame is None else hash(frame))
        return restarted

    def seen(self, key: tuple[str, str]) -> tuple[str, int] | None:
        known = self._marks.get(key)
        return None if known is None else (known[0], known[1])

    def diverged(self, key: tuple[str, str], read: StreamRead) -> bool:
        """True when Redis, in the same epoch, no longer holds what the subscribers here were given:
        the thread's last offset went back, or its event at the last offset seen here is another
        one. Only a lost write does that (a failover to a replica that had not received it, a
        restart from an append-only file that missed it); numbering on would reuse the offsets
        the subscribers already have, and they would drop the new events as duplicates.
        ``read`` holds the events from the last offset seen on (when still retained)."""
        known = self._marks.get(key)
        if known is None or known[0] != read.epoch:
            return False
        _, offset, digest = known
        if read.last_offset < offset:
            return True
        stored = next((frame for at, _, frame in read.events if at == offset), None)
        return digest is not None and stored is not None and hash(stored) != digest

    def __contains__(self, key: object) -> bool:
        return key in self._marks

    def keep_only(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget threads that no connection here subscribes to any more."""
        wanted = set(keys)
        for key in [k for k in self._marks if k not in wanted]:
            del self._marks[key]

    def __len__(self) -> int:
        return len(self._marks)
