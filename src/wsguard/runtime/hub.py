"""The hub: admits connections through the registry, routes events to them, drains them, and
releases each by ownership.

It orchestrates; the records and decisions are elsewhere: which connections are open and who
subscribes to what in :class:`~wsguard.runtime.connections.Connections`, who may connect in the
:class:`~wsguard.core.registry.Registry`, what each connection sends in its
:class:`~wsguard.core.connection.ConnectionState`, background runs in
:class:`~wsguard.runtime.runs.Runs`, presence in :mod:`wsguard.runtime.presence` and token expiry
in :mod:`wsguard.runtime.expiry`.

Everything here runs on one event loop and holds no lock: state changes happen between awaits.
``open`` is the only way in, and its ``finally`` the only way out, so every path that ends a
socket (close frame, reset, heartbeat, error, eviction, shutdown) releases the same way.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any

from wsguard import close, ids
from wsguard.backends.base import Backend, BackendUnavailable, ClusterDecision, Envelope, Published
from wsguard.backends.presence import Presence
from wsguard.context import ConnectionContext, EventIds, RunContext
from wsguard.core.frames import Ref, Since
from wsguard.core.publication import EventTooLarge as EventTooLarge
from wsguard.core.publication import Publication, check_size
from wsguard.core.registry import Admission, Handle, Registry
from wsguard.core.thread_log import History, ThreadKey
from wsguard.runtime import expiry
from wsguard.runtime.connection import Connection, ConnectionHooks, ConnectionLimits, Socket
from wsguard.runtime.connections import Connections, Subscribers
from wsguard.runtime.metrics import Metrics, Snapshot
from wsguard.runtime.presence import PresenceAnswers
from wsguard.runtime.runs import Runs
from wsguard.settings import Settings

logger = logging.getLogger("wsguard")

ForwardedCommand = Callable[[str, str, str], Coroutine[Any, Any, bool]]
"""``(connection_id, user_id, text)``: carry out a command for a stream of this instance."""


class Hub:
    """Connections of this instance, their subscriptions, and the way events reach them."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.registry = Registry(settings.max_connections_per_user, settings.limit_policy)
        self.metrics = Metrics(self.snapshot)
        self.limits = ConnectionLimits.from_settings(settings)
        self.events_delivered = 0
        """Frames written to connections (``wsguard_events_delivered_total``)."""
        self._hooks = ConnectionHooks(release=self._release, ended=self._forget, delivered=self._delivered)
        self.draining = False
        directory = backend.directory
        self.instance_id = directory.instance_id if directory is not None else ids.new_id("inst")
        self.connections = Connections(self.registry)
        self._threads: dict[ThreadKey, Subscribers] = self.connections.by_thread
        """The index's own dict of subscribers by thread, which every delivery reads."""
        self.runs = Runs(settings.max_runs_per_user)
        self._presence = PresenceAnswers(backend, self.registry, self.instance_id)
        self._serving = 0
        self._all_done = asyncio.Event()
        self._all_done.set()
        self._serving_scope = _Serving(self)
        self.on_forwarded_command: ForwardedCommand | None = None
        """Carries out a command another instance took for a stream of this one (the SSE routes
        set it); see :meth:`forward_command`."""
        self._forwarded: set[asyncio.Task[bool]] = set()

    async def start(self) -> None:
        await self.backend.start(self.deliver, self)

    async def close(self) -> None:
        """Stop the runs, the forwarded commands and the backend (after a drain, nothing is connected)."""
        for task in self._forwarded:
            task.cancel()
        await asyncio.gather(*self._forwarded, return_exceptions=True)
        await self.runs.stop()
        await self.backend.close()

    # Connections

    def open(self, context: ConnectionContext, socket: Socket, *, takeover: bool) -> "Opened":
        """``async with hub.open(...) as connection``: the connection is admitted for as long as
        the block runs, and released when it ends; None when the limit rejected it.

        A clustered backend decides first, cluster-wide; the local registry then decides alone
        when the backend leaves it to it (memory, or Redis unreachable). A connection whose
        admission was still awaiting when the drain began is closed with 1001 at once, since
        the drain's sweep over the open connections may already have passed.
        """
        return Opened(self, context, socket, takeover)

    async def _admit(self, context: ConnectionContext, socket: Socket, takeover: bool) -> Connection | None:
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
            self.metrics.count_closed(close.TOO_MANY_CONNECTIONS.reason)
            return None
        connection = Connection(context, admission.handle, socket, self.limits, self._hooks)
        self.connections.add(connection)
        self.metrics.opened.inc()
        logger.debug("connection admitted from %s", context.client_address)
        expiry.schedule(connection, self.settings.jwt_leeway)
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
        connection = self.connections.get(connection_id)
        if connection is None:
            return False
        connection.request_close(close.REPLACED if replaced else close.SUPERSEDED)
        return True

    def subscribed_threads(self) -> Collection[ThreadKey]:
        return self.connections.threads()

    def reset_thread(self, key: ThreadKey) -> None:
        """A new epoch restarted the thread's offsets: let its subscribers take them from 1 again."""
        for connection in self.connections.subscribers(key):
            connection.state.restart_thread(key[1])

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
            connection = self.connections.get(handle.connection_id)
            if connection is not None:
                connection.request_close(reason)

    def extend_expiry(self, connection: Connection, expires_at: float | None) -> None:
        """A ``refresh`` moved the session's expiry."""
        expiry.extend(connection, expires_at, self.settings.jwt_leeway)

    def _forget(self, connection: Connection) -> None:
        """Release every record of the connection; idempotent, and the only exit."""
        self._release(connection.handle)
        expiry.cancel(connection)
        state = connection.state
        for thread_id in state.threads():
            self.connections.unsubscribe(connection, thread_id)
            state.end_subscription(thread_id)
        if self.connections.remove(connection):
            label = connection.closed_label or close.CONNECTION_LOST
            self.metrics.count_closed(label)
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
        return self.connections.of_user(user_id)

    def disconnect_user(self, user_id: str) -> int:
        """Close every connection of the user with 4003; returns how many."""
        connections = self.connections_of(user_id)
        for connection in connections:
            connection.request_close(close.DISCONNECTED_BY_SERVER)
        return len(connections)

    async def drain(self, timeout: float, batch: int = 500) -> None:
        """Refuse new connections, close every open one with 1001 in batches, wait for them."""
        self.draining = True
        connections = list(self.connections)
        for start in range(0, len(connections), batch):
            for connection in connections[start : start + batch]:
                connection.request_close(close.GOING_AWAY)
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(timeout):
                await self._all_done.wait()
        except TimeoutError:
            logger.warning("drain timed out with %d connections open", len(self.connections))

    # Subscriptions

    async def subscribe(
        self, connection: Connection, thread_id: str, since: Since | None, ref: Ref = None
    ) -> None:
        """Replay what ``since`` missed, confirm with ``subscribed``, then go live.

        Live events are held from the start (the connection's state decides what of them, and
        of the history, it has not had); the replay and ``subscribed`` are paced to the client.
        """
        connection.state.begin_subscription(thread_id)
        self.connections.subscribe(connection, thread_id)
        recovery = await self.backend.recover(connection.user_id, thread_id, since)
        replay = connection.state.replay(thread_id, recovery, ref)
        if replay is None:
            return
        for frame in replay:
            if not await connection.send_when_room(frame):
                return
        connection.flush_buffered(thread_id)

    def unsubscribe(self, connection: Connection, thread_id: str) -> None:
        self.connections.unsubscribe(connection, thread_id)
        connection.state.end_subscription(thread_id)

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

        ``run`` gives the event the ``run_id`` and ``request_id`` its frame carries, so that a
        client can tell which run and request it belongs to: a :class:`~wsguard.RunContext`, an
        :class:`~wsguard.context.EventIds` with either, or None for neither. Returns a
        :class:`~wsguard.backends.Published`: the event's offset in its thread (None for a
        user-level event) and the thread's epoch, which a caller may hand to a client to resume
        from. Raises :class:`EventTooLarge` over ``max_message_bytes`` and
        :class:`~wsguard.backends.BackendUnavailable` when the backend cannot take the event.
        The same ``idempotency_key`` for the same user and thread within five minutes publishes
        nothing again and returns the first publish's offset (``duplicate``), so that a caller
        may retry a publish whose answer it did not get.
        """
        check_size(event, data, self.settings.max_message_bytes)
        return await self._publish(user_id, thread_id, event, data, run, idempotency_key)

    async def publish_many(self, publications: Sequence[Publication]) -> list[Published]:
        """Publish each in turn, none unless every one is within ``max_message_bytes``
        (:class:`EventTooLarge`) and the backend is up (:class:`BackendUnavailable`): each size
        is checked once, before any is published. A backend failure part-way raises, the events
        before it published; their idempotency keys make a retry publish only the rest."""
        limit = self.settings.max_message_bytes
        for publication in publications:
            check_size(publication.event, publication.data, limit)
        if not self.backend.up:
            raise BackendUnavailable("backend unavailable")
        published = []
        for publication in publications:
            run_id, request_id = publication.run_id, publication.request_id
            event_ids = EventIds(run_id, request_id) if run_id or request_id else None
            published.append(
                await self._publish(
                    publication.user_id,
                    publication.thread_id,
                    publication.event,
                    publication.data,
                    event_ids,
                    publication.idempotency_key,
                )
            )
        return published

    async def _publish(
        self,
        user_id: str,
        thread_id: str | None,
        event: str,
        data: dict[str, Any],
        run: RunContext | EventIds | None,
        idempotency_key: str | None,
    ) -> Published:
        """An event whose size was checked, to the backend; counted unless a duplicate."""
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
            for connection in self.connections.of_user(envelope.user_id):
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
        return self.runs.start(run, body)

    # Presence

    async def presence(self, user_id: str) -> Presence:
        """How many connections the user holds, per instance: the cluster's leases when there
        are any and Redis answers, else this instance's registry."""
        return await self._presence.of_user(user_id)

    async def online_users(self) -> list[Presence]:
        """Every user online (cluster-wide on Redis), most connections first."""
        return await self._presence.online_users()

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
        return self.connections.get(connection_id)

    async def forward_command(self, user_id: str, connection_id: str, text: str) -> bool:
        """Hand a command to the instance that holds the user's stream, found by its lease;
        False when no other instance holds it. Raises :class:`BackendUnavailable` when the
        leases cannot be read or the message cannot be sent."""
        directory = self.backend.directory
        if directory is None:
            return False
        for lease in await directory.leases_of(user_id):
            if lease.connection_id == connection_id and lease.instance_id != self.instance_id:
                return await directory.forward_command(lease.instance_id, connection_id, user_id, text)
        return False

    def command(self, connection_id: str, user_id: str, text: str) -> None:
        """A command another instance forwarded (the backend calls this): carried out in a task
        of its own, tracked until it ends."""
        if self.on_forwarded_command is None:
            return
        task = asyncio.get_running_loop().create_task(self.on_forwarded_command(connection_id, user_id, text))
        self._forwarded.add(task)
        task.add_done_callback(self._forwarded_done)

    def _forwarded_done(self, task: "asyncio.Task[bool]") -> None:
        self._forwarded.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.background_error("forwarded command", error)

    def disconnect(self, connection_id: str) -> bool:
        """Close one connection of this instance with 4003; False when it is not here."""
        connection = self.connections.get(connection_id)
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
            + self.connections.entry_count,
            thread_logs=self.backend.thread_log_count,
            backend_up=self.backend.up,
            backend=self.backend.traffic,
            events_delivered=self.events_delivered,
            sockets=len(self.connections) - self.connections.streams,
            streams=self.connections.streams,
        )

    def repair(self) -> list[str]:
        """Check that the registry, the connections and the thread index agree; fix what doesn't.

        This is the sweeper's safety net, not a cleanup mechanism: each fix is counted in
        ``wsguard_sweeper_repairs_total`` and should never happen.
        """
        fixes: list[str] = list(self.registry.invariant_violations())
        for handle in self.registry.handles():
            connection = self.connections.get(handle.connection_id)
            if connection is None or connection.close_request is not None:
                self._release(handle)
                fixes.append(f"released handle {handle.connection_id} without a live connection")
        for connection in list(self.connections):
            if connection.close_request is None and not self.registry.holds(connection.handle):
                connection.request_close(close.INTERNAL_ERROR)
                fixes.append(f"closed {connection.connection_id}, open without a handle")
        fixes.extend(self.connections.drop_gone_subscribers())
        if fixes:
            self.metrics.sweeper_repairs.inc(len(fixes))
            for fix in fixes:
                logger.error("sweeper repair: %s", fix)
        return fixes


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

    def __init__(self, hub: Hub, context: ConnectionContext, socket: Socket, takeover: bool) -> None:
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
