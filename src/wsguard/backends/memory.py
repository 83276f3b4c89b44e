"""The embedded default: one process, no external service."""

import secrets
import time
from typing import Any

from wsguard.backends.base import BackendTraffic, ClusterDecision, ClusterMember, Deliver, Envelope, Published
from wsguard.context import EventIds, RunContext
from wsguard.core.frames import Since, event_frame
from wsguard.core.idempotency import IdempotencyTable
from wsguard.core.publication import IDEMPOTENCY_SECONDS
from wsguard.core.thread_log import REMEMBERED_THREADS, History, Recovery, ThreadLogs
from wsguard.core.tickets import TicketTable

REMEMBER_AT_LEAST = 86400.0
"""An expired thread's epoch and last offset are kept at least a day (as the Redis backend does)."""


class MemoryBackend:
    """Thread logs in this process; delivery is a direct call. The epoch changes on every start,
    and for a thread whose expired numbering was forgotten (see :mod:`wsguard.core.thread_log`)."""

    def __init__(
        self,
        retention_events: int,
        retention_seconds: float,
        max_remembered_threads: int = REMEMBERED_THREADS,
        idempotency_seconds: float = IDEMPOTENCY_SECONDS,
    ) -> None:
        self._logs = ThreadLogs(
            secrets.token_hex(8),
            retention_events,
            retention_seconds,
            max_remembered=max_remembered_threads,
            remember_for=max(2 * retention_seconds, REMEMBER_AT_LEAST),
        )
        self._deliver: Deliver | None = None
        self._member: ClusterMember | None = None
        self._tickets = TicketTable()
        self._idempotency: IdempotencyTable[Published] = IdempotencyTable(idempotency_seconds)

    @property
    def up(self) -> bool:
        return True

    @property
    def directory(self) -> None:
        return None

    @property
    def epoch(self) -> str:
        return self._logs.epoch

    async def start(self, deliver: Deliver, member: ClusterMember | None = None) -> None:
        self._deliver = deliver
        self._member = member

    async def admit(
        self, user_id: str, connection_id: str, session_id: str, *, takeover: bool
    ) -> ClusterDecision | None:
        """One process: the hub's registry decides alone."""
        return None

    def release(self, connection_id: str) -> None:
        """Nothing is held here for a connection."""

    async def close(self) -> None:
        self._deliver = None
        self._member = None

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
        scope = (user_id, thread_id, idempotency_key) if idempotency_key is not None else None
        if scope is not None:
            first = self._idempotency.get(scope, time.monotonic())
            if first is not None:
                return Published(first.offset, first.epoch, duplicate=True)
        key = (user_id, thread_id) if thread_id is not None else None
        offset = self._logs.next_offset(key) if key else None
        epoch = self._logs.epoch_of(key) if key else self._logs.epoch
        if key and self._member is not None and self._logs.is_new(key):
            self._member.reset_thread(key)
        frame = event_frame(
            event=event,
            thread_id=thread_id,
            run_id=run.run_id if run else None,
            request_id=run.request_id if run else None,
            offset=offset,
            epoch=epoch,
            data=data,
            ts=time.time(),
        )
        if key and offset is not None:
            self._logs.append(key, offset, frame, time.monotonic())
        if self._deliver is not None:
            self._deliver(Envelope(user_id, thread_id, offset, frame))
        published = Published(offset, epoch)
        if scope is not None:
            self._idempotency.put(scope, published, time.monotonic())
        return published

    async def recover(self, user_id: str, thread_id: str, since: Since | None) -> Recovery:
        epoch, after = (since.epoch, since.offset) if since else (None, None)
        return self._logs.recover((user_id, thread_id), epoch, after, time.monotonic())

    async def history(self, user_id: str, thread_id: str, after: int, limit: int) -> History:
        return self._logs.history((user_id, thread_id), after, limit, time.monotonic())

    def expire(self, now: float) -> None:
        self._logs.expire_all(now)
        self._tickets.prune(now)
        self._idempotency.prune(now)

    async def issue_ticket(
        self, ticket: str, user_id: str, payload: str, ttl: float, max_per_user: int
    ) -> bool:
        """In this process; expired tickets count toward the cap until the sweeper prunes them."""
        return self._tickets.issue(ticket, user_id, payload, time.monotonic() + ttl, max_per_user)

    async def redeem_ticket(self, ticket: str) -> str | None:
        return self._tickets.redeem(ticket, time.monotonic())

    async def shared_key(self, name: str, candidate: bytes) -> None:
        """One process: there is no other instance to agree with."""
        return None

    @property
    def idempotency_count(self) -> int:
        """Idempotency keys remembered, expired ones included until pruned."""
        return len(self._idempotency)

    @property
    def ticket_count(self) -> int:
        """Tickets held, expired ones included until pruned."""
        return len(self._tickets)

    @property
    def thread_log_count(self) -> int:
        return self._logs.log_count

    @property
    def entry_count(self) -> int:
        return 0

    @property
    def traffic(self) -> BackendTraffic:
        return BackendTraffic()
