"""The hub: admits connections through the registry, routes events, and releases by ownership.

Everything here runs on one event loop and holds no lock: state changes happen between awaits.
``open`` is the only way in, and its ``finally`` the only way out, so every path that ends a
socket (close frame, reset, heartbeat, error, eviction, shutdown) releases the same way.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import partial
from typing import Any

from starlette.websockets import WebSocket

from wsguard import close, ids
from wsguard.backends.base import Backend, BackendUnavailable, ClusterDecision, Envelope, Published
from wsguard.backends.presence import Presence, presence_of
from wsguard.context import ConnectionContext, EventIds, RunContext
from wsguard.core.frames import Ref, Since, encode
from wsguard.core.publication import EventTooLarge as EventTooLarge
from wsguard.core.publication import check_size
from wsguard.core.registry import Admission, Handle, Registry
from wsguard.core.thread_log import History, ThreadKey
from wsguard.runtime.connection import Connection, ConnectionHooks, ConnectionLimits
from wsguard.runtime.metrics import Metrics, Snapshot
from wsguard.settings import Settings

logger = logging.getLogger("wsguard")


class Hub:
    """Connections of this instance, their subscriptions, and the way events reach them."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.registry = Registry(settings.max_connections_per_user, settings.limit_policy)
        self.metrics = Metrics(self.snapshot)
        self.limits = ConnectionLimits(
            queue_limit_bytes=settings.queue_limit_bytes,
            write_timeout=settings.write_timeout,
            close_timeout=settings.close_timeout,
            max_message_bytes=settings.max_message_bytes,
            message_rate=settings.message_rate_per_connection,
            max_subscriptions=settings.max_subscriptions_per_connection,
        )
        self.events_delivered = 0
        """Frames written to connections (``wsguard_events_delivered_total``)."""
        self._hooks = ConnectionHooks(release=self._release, ended=self._forget, delivered=self._delivered)
        self.draining = False
        directory = backend.directory
        self.instance_id = directory.instance_id if directory is not None else ids.new_id("inst")
        self._connections: dict[str, Connection] = {}
        self._threads: dict[ThreadKey, dict[str, Connection]] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._runs_by_user: dict[str, int] = {}
        self._serving = 0
        self._all_done = asyncio.Event()
        self._all_done.set()
        self._serving_scope = _Serving(self)

    async def start(self) -> None:
        await self.backend.start(self.deliver, self)

    async def close(self) -> None:
        """Stop the runs and the backend (after a drain, nothing is connected)."""
        for task in list(self._runs):
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        await self.backend.close()

    # Connections

    def open(self, context: ConnectionContext, socket: WebSocket, *, takeover: bool) -> "Opened":
        """``async with hub.open(...) as connection``: the connection is admitted for as long as
        the block runs, and released when it ends; None when the limit rejected it.

        A clustered backend decides first, cluster-wide; the local registry then decides alone
        when the backend leaves it to it (memory, or Redis unreachable). A connection whose
        admission was still awaiting when the drain began is closed with 1001 at once, since
        the drain's sweep over the open connections may already have passed.
        """
        return Opened(self, context, socket, takeover)

    async def _admit(
        self, context: ConnectionContext, socket: WebSocket, takeover: bool
    ) -> Connection | None:
        """The entry half of :meth:`open`; a connection it returns is counted as serving."""
        try:
            decision = await self.backend.admit(
                context.user_id, context.connection_id, context.session_id, takeover=takeover
            )
        except BaseException:
            self.backend.release(context.connection_id)
            raise
        if decision is not None:
            self._close_cluster(decision)
        admission: Admission | None = None
        if decision is None or decision.admitted:
            admission = self.registry.admit(
                context.user_id, context.connection_id, context.session_id, takeover=takeover
            )
            self._close_released(admission)
        if admission is None or admission.handle is None:
            self.backend.release(context.connection_id)
            self.metrics.rejections.inc()
            self.metrics.closed.labels(close.TOO_MANY_CONNECTIONS.reason).inc()
            return None
        connection = Connection(context, admission.handle, socket, self.limits, self._hooks)
        self._connections[context.connection_id] = connection
        self.metrics.opened.inc()
        logger.debug("connection admitted from %s", context.client_address)
        self._schedule_expiry(connection)
        if self.draining:
            connection.request_close(close.GOING_AWAY)
        self._serving_scope.__enter__()
        return connection

    def serving(self) -> AbstractContextManager[None]:
        """Count a connection, or an upgrade still being admitted, until it ends: the drain
        waits for every one, so that an upgrade in flight when it began is refused or closed.

        One object for the hub, entered once per connection: nothing is allocated per entry.
        """
        return self._serving_scope

    def _delivered(self) -> None:
        self.events_delivered += 1

    def _release(self, handle: Handle) -> bool:
        """Give back the local slot and the backend's record (a cluster lease) together."""
        released = self.registry.release(handle)
        self.backend.release(handle.connection_id)
        return released

    def _close_cluster(self, decision: ClusterDecision) -> None:
        """Count the cluster's evictions; close the ones that live here."""
        for closing in decision.closes:
            if closing.superseded:
                self.metrics.evictions.inc()
            if closing.here:
                self.close_connection(closing.connection_id, replaced=closing.replaced)

    def close_connection(self, connection_id: str, *, replaced: bool) -> bool:
        """Close one connection of this instance that the cluster released (4002 or 4001)."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.request_close(close.REPLACED if replaced else close.SUPERSEDED)
        return True

    def subscribed_threads(self) -> Collection[ThreadKey]:
        return tuple(self._threads)

    def reset_thread(self, key: ThreadKey) -> None:
        """A new epoch restarted the thread's offsets: let its subscribers take them from 1 again."""
        for connection in self._threads.get(key, {}).values():
            connection.restart_thread(key[1])

    def background_error(self, task: str, error: BaseException) -> None:
        """A background task survived an unexpected exception: log it and count it."""
        logger.error("%s: unexpected error, going on", task, exc_info=error)
        self.metrics.background_errors.labels(task).inc()

    def _close_released(self, admission: Admission) -> None:
        for handle, reason in [
            *((h, close.REPLACED) for h in admission.replaced),
            *((h, close.SUPERSEDED) for h in admission.evicted),
        ]:
            if reason is close.SUPERSEDED:
                self.metrics.evictions.inc()
            connection = self._connections.get(handle.connection_id)
            if connection is not None:
                connection.request_close(reason)

    def _schedule_expiry(self, connection: Connection) -> None:
        expires_at = connection.context.expires_at
        if expires_at is None:
            return
        delay = max(0.0, expires_at + self.settings.jwt_leeway - time.time())
        connection.expiry_timer = asyncio.get_running_loop().call_later(delay, _expire, connection)

    def extend_expiry(self, connection: Connection, expires_at: float | None) -> None:
        """A ``refresh`` moved the session's expiry."""
        if connection.expiry_timer is not None:
            connection.expiry_timer.cancel()
            connection.expiry_timer = None
        connection.context = replace(connection.context, expires_at=expires_at)
        self._schedule_expiry(connection)

    def _forget(self, connection: Connection) -> None:
        """Release every record of the connection; idempotent, and the only exit."""
        self._release(connection.handle)
        if connection.expiry_timer is not None:
            connection.expiry_timer.cancel()
            connection.expiry_timer = None
        for thread_id in list(connection.subscriptions) + list(connection.pending_threads):
            self._unindex(connection, thread_id)
            connection.end_subscription(thread_id)
        if self._connections.get(connection.connection_id) is connection:
            del self._connections[connection.connection_id]
            label = connection.closed_label or close.CONNECTION_LOST
            self.metrics.closed.labels(label).inc()
            if logger.isEnabledFor(logging.DEBUG):
                context = connection.context
                logger.debug(
                    "connection released: %s",
                    label,
                    extra={
                        "connection_id": context.connection_id,
                        "user_id": context.user_id,
                        "session_id": context.session_id,
                    },
                )
            if connection.closed_label == close.HEARTBEAT_TIMEOUT.reason:
                self.metrics.zombies_reaped.inc()
            closed_at = connection.socket_closed_at or time.monotonic()
            self.metrics.cleanup_seconds.observe(max(0.0, time.monotonic() - closed_at))

    def connections_of(self, user_id: str) -> list[Connection]:
        """The user's open connections, oldest first."""
        found = (self._connections.get(h.connection_id) for h in self.registry.handles_of(user_id))
        return [c for c in found if c is not None]

    def disconnect_user(self, user_id: str) -> int:
        """Close every connection of the user with 4003; returns how many."""
        connections = self.connections_of(user_id)
        for connection in connections:
            connection.request_close(close.DISCONNECTED_BY_SERVER)
        return len(connections)

    async def drain(self, timeout: float, batch: int = 500) -> None:
        """Refuse new connections, close every open one with 1001 in batches, wait for them."""
        self.draining = True
        connections = list(self._connections.values())
        for start in range(0, len(connections), batch):
            for connection in connections[start : start + batch]:
                connection.request_close(close.GOING_AWAY)
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(timeout):
                await self._all_done.wait()
        except TimeoutError:
            logger.warning("drain timed out with %d connections open", len(self._connections))

    # Subscriptions

    async def subscribe(
        self, connection: Connection, thread_id: str, since: Since | None, ref: Ref = None
    ) -> None:
        """Replay what ``since`` missed, confirm with ``subscribed``, then go live."""
        key = (connection.user_id, thread_id)
        connection.begin_subscription(thread_id)
        self._threads.setdefault(key, {})[connection.connection_id] = connection
        recovery = await self.backend.recover(connection.user_id, thread_id, since)
        if thread_id not in connection.pending_threads:
            return
        replay = connection.replay_frames(thread_id, ((r.offset, r.frame) for r in recovery.frames))
        for frame in replay:
            if not await connection.send_when_room(frame):
                return
        subscribed = encode(
            "subscribed",
            ref,
            thread_id=thread_id,
            epoch=recovery.epoch,
            offset=recovery.last_offset,
            recovered=recovery.recovered,
            replayed=len(replay),
        )
        if not await connection.send_when_room(subscribed):  # after a large replay, paced like it
            return
        connection.flush_buffered(thread_id)

    def unsubscribe(self, connection: Connection, thread_id: str) -> None:
        self._unindex(connection, thread_id)
        connection.end_subscription(thread_id)

    def _unindex(self, connection: Connection, thread_id: str) -> None:
        key = (connection.user_id, thread_id)
        subscribers = self._threads.get(key)
        if subscribers is not None:
            subscribers.pop(connection.connection_id, None)
            if not subscribers:
                del self._threads[key]

    # Events

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
        """Publish an event to a user (thread None) or to one of the user's threads.

        :class:`EventTooLarge` over ``max_message_bytes``. The same ``idempotency_key`` for the
        same user and thread within five minutes publishes nothing again and returns the first
        offset, so that a caller may retry a publish whose answer it did not get.
        """
        check_size(event, data, self.settings.max_message_bytes)
        published = await self.backend.publish(
            user_id, thread_id, event, data, run, idempotency_key=idempotency_key
        )
        if not published.duplicate:
            self.metrics.events_published.inc()
        return published

    async def history(self, user_id: str, thread_id: str, after: int, limit: int) -> History:
        """Up to ``limit`` retained events of the user's thread after offset ``after``."""
        return await self.backend.history(user_id, thread_id, after, limit)

    def deliver(self, envelope: Envelope) -> None:
        """Hand one published event to the connections it is for (the backend calls this)."""
        if envelope.thread_id is None:
            for connection in self.connections_of(envelope.user_id):
                connection.send(envelope.frame)
            return
        subscribers = self._threads.get((envelope.user_id, envelope.thread_id))
        if subscribers:
            for connection in list(subscribers.values()):
                connection.deliver_thread_event(envelope.offset, envelope.frame, envelope.thread_id)

    def start_run(self, run: RunContext, body: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``body`` in the background, tracked so that shutdown can stop it.

        False (and nothing started) when the user already has ``max_runs_per_user`` running.
        """
        logger.debug("run %s started on thread %s", run.run_id, run.thread_id)
        limit = self.settings.max_runs_per_user
        running = self._runs_by_user.get(run.user_id, 0)
        if limit and running >= limit:
            return False
        self._runs_by_user[run.user_id] = running + 1
        task = asyncio.create_task(body(), name=f"run {run.run_id}")
        self._runs.add(task)
        task.add_done_callback(partial(self._run_ended, run))
        return True

    def _run_ended(self, run: RunContext, task: asyncio.Task[None]) -> None:
        """Forget the run; an exception it ended with is logged, never lost."""
        self._runs.discard(task)
        left = self._runs_by_user.get(run.user_id, 1) - 1
        if left > 0:
            self._runs_by_user[run.user_id] = left
        else:
            self._runs_by_user.pop(run.user_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s failed", run.run_id, exc_info=task.exception())

    # Presence

    async def presence(self, user_id: str) -> Presence:
        """How many connections the user holds, per instance: the cluster's leases when there
        are any and Redis answers, else this instance's registry."""
        directory = self.backend.directory
        if directory is not None and self.backend.up:
            with contextlib.suppress(BackendUnavailable):
                leases = await directory.leases_of(user_id)
                return presence_of(user_id, Counter(lease.instance_id for lease in leases))
        return presence_of(user_id, {self.instance_id: len(self.registry.handles_of(user_id))})

    async def online_users(self) -> list[Presence]:
        """Every user online (cluster-wide on Redis), most connections first."""
        directory = self.backend.directory
        counts: dict[str, dict[str, int]] | None = None
        if directory is not None and self.backend.up:
            with contextlib.suppress(BackendUnavailable):
                counts = await directory.lease_counts()
        if counts is None:
            counts = {}
            for handle in self.registry.handles():
                mine = counts.setdefault(handle.user_id, {self.instance_id: 0})
                mine[self.instance_id] += 1
        found = [presence_of(user_id, instances) for user_id, instances in counts.items()]
        return sorted(found, key=lambda p: (-p.connections, p.user_id))

    async def disconnect_user_everywhere(self, user_id: str) -> int:
        """Close every connection of the user with 4003: here at once, and on the other instances
        that hold one (by their leases, over their control channels). How many were closed.

        Raises :class:`BackendUnavailable` when the leases cannot be read (this instance's
        connections are closed already); with the backend down, only this instance's are.
        """
        closed = self.disconnect_user(user_id)
        directory = self.backend.directory
        if directory is not None and self.backend.up:
            for lease in await directory.leases_of(user_id):
                if lease.instance_id != self.instance_id:
                    closed += await directory.disconnect(lease.instance_id, lease.connection_id)
        return closed

    def connection(self, connection_id: str) -> Connection | None:
        """One open connection of this instance."""
        return self._connections.get(connection_id)

    def disconnect(self, connection_id: str) -> bool:
        """Close one connection of this instance with 4003; False when it is not here."""
        connection = self._connections.get(connection_id)
        if connection is None:
            return False
        connection.request_close(close.DISCONNECTED_BY_SERVER)
        return True

    # Observation

    def snapshot(self) -> Snapshot:
        return Snapshot(
            connections=self.registry.connection_count,
            users=self.registry.user_count,
            user_connections_max=self.registry.max_user_connections,
            registry_entries=self.registry.entry_count
            + self.backend.entry_count
            + len(self._connections)
            + sum(len(s) for s in self._threads.values()),
            thread_logs=self.backend.thread_log_count,
            backend_up=self.backend.up,
            backend=self.backend.traffic,
            events_delivered=self.events_delivered,
        )

    def repair(self) -> list[str]:
        """Check that the registry, the connections and the thread index agree; fix what doesn't.

        This is the sweeper's safety net, not a cleanup mechanism: each fix is counted in
        ``wsguard_sweeper_repairs_total`` and should never happen.
        """
        fixes: list[str] = list(self.registry.invariant_violations())
        for handle in self.registry.handles():
            connection = self._connections.get(handle.connection_id)
            if connection is None or connection.close_request is not None:
                self._release(handle)
                fixes.append(f"released handle {handle.connection_id} without a live connection")
        for connection in list(self._connections.values()):
            if connection.close_request is None and not self.registry.holds(connection.handle):
                connection.request_close(close.INTERNAL_ERROR)
                fixes.append(f"closed {connection.connection_id}, open without a handle")
        for key, subscribers in list(self._threads.items()):
            for connection_id, connection in list(subscribers.items()):
                if self._connections.get(connection_id) is not connection:
                    del subscribers[connection_id]
                    fixes.append(f"dropped subscription of gone {connection_id} to {key[1]}")
            if not subscribers:
                del self._threads[key]
        if fixes:
            self.metrics.sweeper_repairs.inc(len(fixes))
            for fix in fixes:
                logger.error("sweeper repair: %s", fix)
        return fixes


def _expire(connection: Connection) -> None:
    """The token expired: a module function, so that the timer holds no bound method."""
    connection.request_close(close.TOKEN_EXPIRED)


class _Serving:
    """The context manager of :meth:`Hub.serving`: counts what the drain must wait for."""

    __slots__ = ("_hub",)

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def __enter__(self) -> None:
        self._hub._serving += 1
        self._hub._all_done.clear()

    def __exit__(self, *exc_info: object) -> None:
        hub = self._hub
        hub._serving -= 1
        if not hub._serving:
            hub._all_done.set()


class Opened:
    """What :meth:`Hub.open` returns. An ``async with`` on a small object rather than on an
    async generator, so that each open connection holds no generator frame for it."""

    __slots__ = ("_connection", "_context", "_hub", "_socket", "_takeover")

    def __init__(self, hub: Hub, context: ConnectionContext, socket: WebSocket, takeover: bool) -> None:
        self._hub = hub
        self._context = context
        self._socket = socket
        self._takeover = takeover
        self._connection: Connection | None = None

    async def __aenter__(self) -> Connection | None:
        self._connection = await self._hub._admit(self._context, self._socket, self._takeover)
        return self._connection

    async def __aexit__(self, *exc_info: object) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                self._hub._forget(connection)
            finally:
                self._hub._serving_scope.__exit__()
