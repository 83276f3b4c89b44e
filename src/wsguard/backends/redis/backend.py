"""The Redis backend: cluster-wide leases, pub/sub delivery, and retention in streams.

Any number of instances that share one Redis (a master watched by Sentinels, or a Redis
Cluster: the differences are in :mod:`wsguard.backends.redis.topology`) behave as one server.
Events are published on one channel per user, which an instance holds only while it holds a
connection of that user. Four background tasks, all owned here and cancelled by
:meth:`RedisBackend.close`: the listener (pub/sub, reconnecting with backoff), the channel keeper
(joins and leaves users' channels as their connections come and go), the renewer (the lease
heartbeat) and the releaser (batched lease deletions, so that releasing a connection never blocks
or spawns a task).
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import FullJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsguard import ids
from wsguard.backends.base import (
    BackendTraffic,
    BackendUnavailable,
    ClusterDecision,
    ClusterMember,
    Deliver,
    Envelope,
    Published,
)
from wsguard.backends.redis import scripts
from wsguard.backends.redis.channels import RESEND_AFTER, ChannelCommand, UserChannels
from wsguard.backends.redis.decisions import (
    LeaseTable,
    LocalLease,
    Message,
    RenewalOutcome,
    RenewalSchedule,
    StreamRead,
    ThreadMarks,
    control_payload,
    decide_history,
    decide_recovery,
    parse_admission,
    parse_control,
    parse_message,
    parse_renewal,
    parse_shared_key,
    parse_stream_read,
    parse_ticket_value,
    renewal_args,
    ticket_value,
)
from wsguard.backends.redis.directory import RedisDirectory
from wsguard.backends.redis.keyspace import Keys, ticket_digest
from wsguard.backends.redis.publishing import Outgoing, PublishPlan, frame_template, new_epoch, parse_outcomes
from wsguard.backends.redis.topology import Client, Listener, topology_for
from wsguard.cancellation import raise_if_cancelled
from wsguard.context import EventIds, RunContext
from wsguard.core.frames import Since
from wsguard.core.publication import IDEMPOTENCY_SECONDS
from wsguard.core.thread_log import History, Recovery, ThreadKey
from wsguard.errors import WSGuardError
from wsguard.redis_url import redact_url
from wsguard.settings import LimitPolicy, Settings

logger = logging.getLogger("wsguard")

_DOWN = (RedisError, RedisClusterException, OSError)
RECONNECT_BACKOFF = FullJitterBackoff(cap=1.0, base=0.05)
"""Between attempts to reach Redis again: up to 50 ms, doubling to a cap of 1 s, so that a
returning Redis is found quickly and instances that lost it together do not return in step."""
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError)
"""Redis could not be reached: the background loops log these quietly and try again; any other
exception (a bad reply, a key of the wrong type, a bug) is logged and counted. redis-py raises
``RedisClusterException`` (not a ``RedisError``) when no node of a cluster answers, or a slot has
no node."""
MASTER_CHECK_INTERVAL = 1.0
"""With Sentinel, seconds between asking the Sentinels which server is the master: after a
failover that left the old master running, how long the instance may still be on it."""
_RENEWAL_TASK = "lease_renewal"
_RELEASE_TASK = "lease_release"
_CHANNEL_TASK = "user_channels"
_JOIN_WAIT = 5.0
"""How long admission waits for Redis to confirm the user's channel before going on without it
(the listener then reconnects, and its backfill delivers what the connection missed)."""


class ChannelDropped(WSGuardError, RedisConnectionError):
    """Redis unsubscribed the listener from a channel it holds without being asked: a cluster
    moved the channel's slot to another node. The listener reconnects, as after any loss."""


class MasterMoved(WSGuardError, RedisConnectionError):
    """The Sentinels name another master than the one the listener is subscribed on."""


class RedisBackend:
    """A :class:`~wsguard.backends.base.Backend` on Redis, for many instances behind one address."""

    def __init__(
        self,
        url: str,
        *,
        max_per_user: int,
        policy: LimitPolicy,
        lease_ttl: float,
        retention_events: int,
        retention_seconds: float,
        prefix: str = "wsguard",
        instance_id: str | None = None,
    ) -> None:
        self.url = url
        self.instance_id = instance_id or ids.new_id("inst")
        self.max_per_user = max_per_user
        self.policy = policy
        self.schedule = RenewalSchedule(lease_ttl)
        self._topology = topology_for(url)
        self.keys = Keys(prefix, hash_tags=self._topology.hash_tags)
        self._plan = PublishPlan.of(
            self.keys,
            self._topology.publish_command,
            retention_events=retention_events,
            retention_seconds=retention_seconds,
            idempotency_seconds=IDEMPOTENCY_SECONDS,
        )
        self.retention_events = retention_events
        self.retention_ms = self._plan.retention_ms
        self.meta_ttl_ms = self._plan.meta_ttl_ms
        self.client: Client = self._topology.client(
            socket_connect_timeout=1.0, socket_timeout=5.0, retry=Retry(NoBackoff(), 1)
        )
        self._listener_client: Client = self._topology.client(
            socket_connect_timeout=1.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=max(1, int(lease_ttl)),
        )
        """Pub/sub never reconnects behind the listener's back: every reconnect is seen, logged
        and followed by a lease renewal and a backfill."""
        self._directory = RedisDirectory(
            self.client, self.keys, self.instance_id, self._topology.publish_command
        )
        self._admit = self.client.register_script(scripts.ADMIT)
        self._renew = self.client.register_script(scripts.RENEW)
        self._publish = self.client.register_script(scripts.PUBLISH)
        self._read_thread = self.client.register_script(scripts.READ_THREAD)
        self._restart_thread = self.client.register_script(scripts.RESTART_THREAD)
        self._reserve_ticket = self.client.register_script(scripts.RESERVE_TICKET)
        self._shared_key = self.client.register_script(scripts.SHARED_KEY)
        self._leases = LeaseTable()
        self._channels = UserChannels()
        self._channel_wake = asyncio.Event()
        self._channel_change = asyncio.Event()
        self._pubsub: Listener | None = None
        self._messages_received = 0
        self._marks = ThreadMarks()
        self._releases: deque[tuple[str, str]] = deque()
        self._release_wake = asyncio.Event()
        self._deliver: Deliver | None = None
        self._member: ClusterMember | None = None
        self._up = False
        self._was_down = False
        self._tasks: list[asyncio.Task[None]] = []
        self._first_attempt = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> "RedisBackend":
        return cls(
            settings.backend,
            max_per_user=settings.max_connections_per_user,
            policy=settings.limit_policy,
            lease_ttl=settings.lease_ttl,
            retention_events=settings.retention_events,
            retention_seconds=settings.retention_seconds,
        )

    # Lifecycle

    @property
    def up(self) -> bool:
        """True while the listener holds its subscriptions: events reach this instance."""
        return self._up

    async def start(self, deliver: Deliver, member: ClusterMember | None = None) -> None:
        """Start the background tasks; wait briefly for Redis, but start without it."""
        self._deliver, self._member = deliver, member
        self._tasks = [
            asyncio.create_task(self._listen(), name="wsguard redis listener"),
            asyncio.create_task(self._keep_channels(), name="wsguard redis user channels"),
            asyncio.create_task(self._renew_forever(), name="wsguard redis lease renewal"),
            asyncio.create_task(self._release_forever(), name="wsguard redis lease release"),
        ]
        try:
            async with asyncio.timeout(3.0):
                await self._first_attempt.wait()
        except TimeoutError:
            pass

    async def close(self) -> None:
        """Stop the tasks, give back the last leases if Redis answers, and close the client."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for lease in self._leases.by_user().values():
            for held in lease:
                self.release(held.connection_id)
        try:
            async with asyncio.timeout(1.0):
                await self._flush_releases()
        except (TimeoutError, *_DOWN):
            pass
        self._set_up(False, None)
        self._deliver = self._member = None
        await self.client.aclose()
        await self._listener_client.aclose()
        await self._topology.aclose()

    def _set_up(self, up: bool, error: BaseException | None) -> None:
        """Log every change of reachability once (``wsguard_backend_up`` reads it).

        Unreachable at start is not a change: the server's start-up lines say it (a WARNING).
        """
        if not up and error is not None:
            self._was_down = True
        if up == self._up:
            return
        was_down, self._up = self._was_down, up
        if up:
            level = logging.WARNING if was_down else logging.INFO
            logger.log(
                level,
                "redis backend up at %s%s: instance %s listening on %s* for its %d users",
                redact_url(self.url),
                " again" if was_down else "",
                self.instance_id,
                self.keys.user_events_prefix,
                self._channels.wanted_count,
            )
        elif error is not None:
            logger.error(
                "redis backend down at %s: %s; local connections stay up, admission runs on the "
                "local limit and publishing answers 503",
                redact_url(self.url),
                error,
            )

    # Admission

    async def admit(
        self, user_id: str, connection_id: str, session_id: str, *, takeover: bool
    ) -> ClusterDecision | None:
        """Lease the connection cluster-wide (atomic in Redis); None when Redis is unreachable."""
        lease = LocalLease(connection_id, user_id, session_id)
        self._leases.add(lease)
        channel = self.keys.user_events(user_id)
        self._channels.hold(connection_id, channel)
        self._channel_wake.set()
        if not self._up:
            return None
        args = [
            connection_id,
            self.instance_id,
            session_id,
            str(self.schedule.ttl_ms),
            str(self.max_per_user),
            "reject" if self.policy is LimitPolicy.REJECT else "evict",
            "1" if takeover else "0",
        ]
        try:
            reply = await self._admit(keys=[self.keys.leases(user_id)], args=args)
        except _DOWN as error:
            logger.warning("cluster admission failed, deciding locally: %s", error)
            return None
        decision, admitted_us = parse_admission(reply, self.instance_id)
        if decision.admitted:
            lease.admitted_us = admitted_us
            await self._wait_live(channel)
        else:
            self._leases.remove(connection_id)
            self._channels.drop(connection_id)
            self._channel_wake.set()
        remote = [c for c in decision.closes if not c.here]
        if remote:
            await self._send_control(
                [
                    (self.keys.control(c.instance_id), control_payload(c.connection_id, c.replaced))
                    for c in remote
                ]
            )
        return decision

    async def _send_control(self, messages: list[tuple[str, str]]) -> None:
        """Tell other instances to close connections; a lost message is caught by their renewal."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for channel, payload in messages:
                    pipe.execute_command(self._topology.publish_command, channel, payload)
                await pipe.execute()
        except _DOWN as error:
            logger.warning("control message not sent, the holder's renewal will close it: %s", error)

    def release(self, connection_id: str) -> None:
        """Forget the lease here at once; delete it in Redis in the releaser's next batch."""
        lease = self._leases.remove(connection_id)
        self._channels.drop(connection_id)
        self._channel_wake.set()
        if lease is not None:
            self._releases.append((lease.user_id, connection_id))
            self._release_wake.set()

    async def _release_forever(self) -> None:
        """Delete released leases in batches; survives any exception (logged and counted)."""
        while True:
            raise_if_cancelled()
            await self._release_wake.wait()
            self._release_wake.clear()
            try:
                await self._flush_releases()
            except _UNREACHABLE as error:
                logger.info("lease release not sent, the leases will expire: %s", error)
            except Exception as error:
                self._background_error(_RELEASE_TASK, error)

    async def _flush_releases(self) -> None:
        if not self._releases:
            return
        batch = list(self._releases)
        self._releases.clear()
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, connection_id in batch:
                pipe.hdel(self.keys.leases(user_id), connection_id)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                self._background_error(_RELEASE_TASK, reply)

    async def _renew_forever(self) -> None:
        """The renewal heartbeat; survives any exception (logged and counted), so that one bad
        reply never lets this instance's leases expire."""
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.schedule.interval)
            try:
                await self.renew()
            except _UNREACHABLE as error:
                logger.info("lease renewal failed: %s", error)
            except Exception as error:
                self._background_error(_RENEWAL_TASK, error)

    def _background_error(self, task: str, error: BaseException) -> None:
        if self._member is not None:
            self._member.background_error(task, error)
        else:
            logger.error("%s: unexpected error, going on", task, exc_info=error)

    async def renew(self) -> None:
        """The lease heartbeat: renew each lease, re-create lost ones, close what is over the limit."""
        groups = [leases for leases in self._leases.by_user().values()]
        if not groups:
            return
        calls = [
            (
                [self.keys.leases(leases[0].user_id)],
                renewal_args(self.instance_id, self.schedule.ttl_ms, self.max_per_user, leases),
            )
            for leases in groups
        ]
        replies = await self._topology.run_script(self.client, self._renew, calls)
        for leases, reply in zip(groups, replies, strict=True):
            try:
                if isinstance(reply, Exception):
                    raise reply
                outcomes = parse_renewal(reply, leases)
            except (ResponseError, ValueError) as error:
                self._background_error(_RENEWAL_TASK, error)
                continue
            for lease, outcome in outcomes:
                if self._leases.get(lease.connection_id) is not lease:
                    if outcome is not RenewalOutcome.OVER:
                        self._releases.append((lease.user_id, lease.connection_id))
                        self._release_wake.set()
                elif outcome is RenewalOutcome.OVER and self._member is not None:
                    logger.warning(
                        "connection %s lost its lease over the limit: closing", lease.connection_id
                    )
                    self._member.close_connection(lease.connection_id, replaced=False)

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
        """Number and retain (thread events) and fan out to every instance, atomically; an
        idempotency key seen within its window gives the first publish's offset, and nothing
        is published again."""
        if not self._up:
            raise BackendUnavailable("redis backend is unreachable")
        template = frame_template(
            user_id=user_id,
            event=event,
            thread_id=thread_id,
            run_id=run.run_id if run else None,
            request_id=run.request_id if run else None,
            data=data,
            ts=time.time(),
        )
        [(_, (keys, args))] = self._plan.calls(
            [Outgoing(user_id, thread_id, template, idempotency_key)], new_epoch()
        )
        try:
            reply = await self._publish(keys=keys, args=args)
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        [outcome] = parse_outcomes(reply)
        return Published(outcome.offset, outcome.epoch, outcome.duplicate)

    async def _read(self, key: ThreadKey, after: int | None, limit: int | None = None) -> StreamRead:
        """The thread's stream after ``after``; with ``limit``, at most that many unexpired events."""
        user_id, thread_id = key
        keys = [self.keys.thread_meta(user_id, thread_id), self.keys.thread_log(user_id, thread_id)]
        args = [new_epoch(), "" if after is None else str(after), str(self.meta_ttl_ms)]
        if limit is not None:
            args += [str(limit), str(self.retention_ms)]
        return parse_stream_read(await self._read_thread(keys=keys, args=args))

    async def history(self, user_id: str, thread_id: str, after: int, limit: int) -> History:
        """Read from the thread's stream on any instance; :class:`BackendUnavailable` without Redis."""
        self._require_up()
        try:
            read = await self._read((user_id, thread_id), after, limit)
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        return decide_history(read, after, limit, self.retention_ms)

    async def recover(self, user_id: str, thread_id: str, since: Since | None) -> Recovery:
        """Replay from the thread's stream; without Redis, nothing can be recovered."""
        key = (user_id, thread_id)
        read: StreamRead | None = None
        if self._up:
            try:
                read = await self._read(key, since.offset if since else None)
            except _DOWN as error:
                logger.info("recovery of %s failed: %s", thread_id, error)
        if read is None:
            seen = self._marks.seen(key)
            return Recovery(seen[0] if seen else "", seen[1] if seen else 0, False, ())
        if key not in self._marks:
            self._marks.note(key, read.epoch, read.last_offset)
        return decide_recovery(
            read, since.epoch if since else None, since.offset if since else None, self.retention_ms
        )

    def _dispatch(self, message: Message) -> None:
        """Hand one event to the hub, noting how far this instance's subscribers have seen."""
        envelope = message.envelope
        if envelope.thread_id is not None and envelope.offset is not None:
            key = (envelope.user_id, envelope.thread_id)
            restarted = key in self._marks and self._marks.note(
                key, message.epoch, envelope.offset, envelope.frame
            )
            if restarted and self._member is not None:
                self._member.reset_thread(key)
        if self._deliver is not None:
            self._deliver(envelope)

    async def backfill(self) -> int:
        """Deliver, from the streams, what subscribers here may have missed while not listening."""
        if self._member is None:
            return 0
        threads = list(self._member.subscribed_threads())
        self._marks.keep_only(threads)
        delivered = 0
        for key in threads:
            seen = self._marks.seen(key)
            read = await self._read(key, max(seen[1] - 1, 0) if seen else None)
            if seen is None:
                self._marks.note(key, read.epoch, read.last_offset)
                continue
            after = seen[1]
            if self._marks.diverged(key, read):
                await self._restart(key, read.epoch)
                read = await self._read(key, 0)
                after = 0
            elif read.epoch != seen[0]:
                read = await self._read(key, 0)
                after = 0
            for offset, _, frame in read.events:
                if offset > after:
                    self._dispatch(Message(Envelope(key[0], key[1], offset, frame), read.epoch))
                    delivered += 1
        return delivered

    async def _restart(self, key: ThreadKey, epoch: str) -> None:
        """The thread's history in Redis is not the one its subscribers here were given: start it
        again in a new epoch, so that every subscriber and every ``since`` sees the numbering
        restart (as after Redis lost its data) instead of having new events dropped as repeats."""
        user_id, thread_id = key
        keys = [self.keys.thread_meta(user_id, thread_id), self.keys.thread_log(user_id, thread_id)]
        restarted = await self._restart_thread(keys=keys, args=[epoch, new_epoch(), str(self.meta_ttl_ms)])
        if restarted:
            logger.warning(
                "thread %s of %s: Redis lost events its subscribers were given (a failover or a "
                "restart lost writes); it starts again in a new epoch",
                thread_id,
                user_id,
            )

    # Tickets and shared keys

    def _require_up(self) -> None:
        """Fail at once while the listener is down, as publishing does, rather than wait out
        the client's timeouts on a Redis that is known to be unreachable."""
        if not self._up:
            raise BackendUnavailable("redis backend is unreachable")

    async def issue_ticket(
        self, ticket: str, user_id: str, payload: str, ttl: float, max_per_user: int
    ) -> bool:
        """Count the ticket toward its user's cap (across instances, by Redis's clock), then keep
        it under its digest with Redis expiring it. Two single-key steps, so that a cluster can
        run them: a ticket counted but not kept (Redis lost in between) only holds a place in its
        user's cap until it would have expired."""
        self._require_up()
        digest = ticket_digest(ticket)
        ttl_ms = str(max(1, round(ttl * 1000)))
        try:
            if max_per_user:
                args = [digest, ttl_ms, str(max_per_user)]
                reserved = await self._reserve_ticket(keys=[self.keys.user_tickets(user_id)], args=args)
                if int(reserved) != 1:
                    return False
            await self.client.set(self.keys.ticket(digest), ticket_value(user_id, payload), px=int(ttl_ms))
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        return True

    async def redeem_ticket(self, ticket: str) -> str | None:
        """GETDEL: of instances redeeming one ticket at once, exactly one gets it. Then give its
        place in the user's cap back (if that fails, the place frees itself at the ticket's
        expiry)."""
        self._require_up()
        digest = ticket_digest(ticket)
        try:
            value = await self.client.getdel(self.keys.ticket(digest))
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        if value is None:
            return None
        try:
            user_id, payload = parse_ticket_value(value)
        except ValueError:
            logger.warning("a ticket key held something other than a ticket; refused")
            return None
        try:
            await self.client.zrem(self.keys.user_tickets(user_id), digest)
        except _DOWN as error:
            logger.info("a used ticket counts toward its user's cap until it expires: %s", error)
        return payload

    async def shared_key(self, name: str, candidate: bytes) -> bytes:
        """Set once (the first instance's candidate wins), read by every instance."""
        self._require_up()
        try:
            reply = await self._shared_key(keys=[self.keys.shared_key(name)], args=[candidate.hex()])
        except _DOWN as error:
            raise BackendUnavailable(f"redis backend failed: {error}") from error
        return parse_shared_key(reply)

    # The listener

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self._topology.listener(self._listener_client)
            try:
                await self._topology.refresh(self._listener_client)
                await self._topology.ready(self.client)
                await self._subscribe(pubsub)
                self._pubsub = pubsub
                self._channel_wake.set()
                failures = 0
                self._set_up(True, None)
                self._first_attempt.set()
                await self.renew()
                await self.backfill()
                check_master_at = time.monotonic() + MASTER_CHECK_INTERVAL
                while True:
                    raise_if_cancelled()
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._on_message(message)
                    if time.monotonic() >= check_master_at:
                        await self._follow_master(pubsub)
                        check_master_at = time.monotonic() + MASTER_CHECK_INTERVAL
            except _DOWN as error:
                self._set_up(False, error)
            except Exception as error:
                logger.exception("redis listener failed; reconnecting")
                self._set_up(False, error)
            finally:
                self._pubsub = None
                self._channels.reset()
                self._channels_changed()
                self._first_attempt.set()
                await _quietly(pubsub.aclose)
            raise_if_cancelled()
            await asyncio.sleep(RECONNECT_BACKOFF.compute(failures))
            failures = min(failures + 1, 30)  # past the cap already; 2**n must stay a float

    async def _follow_master(self, pubsub: Listener) -> None:
        """With Sentinel: move both clients to the master the Sentinels name now; raise
        :class:`MasterMoved` when the listener is on another server, so that it reconnects,
        renews and backfills as after any loss of Redis. Sentinels that cannot answer leave
        everything where it is: the server the clients are on may well still be the master."""
        try:
            master = await self._topology.follow_master(self.client, self._listener_client)
        except _UNREACHABLE as error:
            logger.info("could not ask the Sentinels for the master: %s", error)
            return
        if master is None:
            return
        server = pubsub.server
        if server is not None and server != master:
            raise MasterMoved(
                f"the Sentinels name {master[0]}:{master[1]} as master, the listener was on "
                f"{server[0]}:{server[1]}"
            )

    async def _subscribe(self, pubsub: Listener) -> None:
        """Subscribe to this instance's control channel and to the channels of the users it
        holds, and wait until Redis has confirmed them all."""
        control = self.keys.control(self.instance_id)
        self._channels.reset()
        await pubsub.subscribe(control)
        await self._send_channel_commands(pubsub)
        control_confirmed = False
        async with asyncio.timeout(5.0):
            while not (control_confirmed and self._channels.settled()):
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe" and _text(message["channel"]) == control:
                    control_confirmed = True
                else:
                    self._on_message(message)

    async def _send_channel_commands(self, pubsub: Listener) -> None:
        for command, channels in self._channels.pending(time.monotonic()).items():
            if command is ChannelCommand.SUBSCRIBE:
                await pubsub.subscribe(*channels)
            else:
                await pubsub.unsubscribe(*channels)

    async def _keep_channels(self) -> None:
        """Send the joins and leaves of users' channels as connections come and go; survives any
        exception (a lost connection is the listener's to handle, anything else is counted)."""
        while True:
            raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESEND_AFTER / 2):
                    await self._channel_wake.wait()
            self._channel_wake.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue
            try:
                await self._send_channel_commands(pubsub)
            except _UNREACHABLE as error:
                logger.info("user channel change not sent, the listener will reconnect: %s", error)
            except Exception as error:
                self._background_error(_CHANNEL_TASK, error)

    async def _wait_live(self, channel: str) -> None:
        """Wait until Redis delivers the channel's events here, so that nothing published after
        admission is missed, even when the listener reconnects meanwhile (on a cluster, a
        subscription to a slot that a failover moved makes it reconnect, in milliseconds); past
        :data:`_JOIN_WAIT`, go on (the backfill covers threads)."""
        try:
            async with asyncio.timeout(_JOIN_WAIT):
                while not self._channels.live(channel):
                    await self._channel_change.wait()
        except TimeoutError:
            logger.warning("channel %s not confirmed by redis within %.0f s", channel, _JOIN_WAIT)

    def _channels_changed(self) -> None:
        """Wake every admission waiting for its channel (each then checks its own)."""
        self._channel_change.set()
        self._channel_change = asyncio.Event()

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("subscribe", "unsubscribe"):
            channel = _text(message["channel"])
            if kind == "unsubscribe" and (
                channel == self.keys.control(self.instance_id) or self._channels.dropped(channel)
            ):
                raise ChannelDropped(f"redis dropped the subscription to {channel} (its slot moved)")
            self._channels.confirmed(ChannelCommand(kind), channel)
            self._channel_wake.set()
            self._channels_changed()
            return
        if kind != "message":
            return
        channel = _text(message["channel"])
        try:
            if channel.startswith(self.keys.user_events_prefix):
                self._messages_received += 1
                self._dispatch(parse_message(message["data"]))
            elif self._member is not None:
                control = parse_control(message["data"])
                if control.command is not None:
                    self._member.command(control.connection_id, *control.command)
                elif control.disconnected:
                    self._member.disconnect(control.connection_id)
                else:
                    self._member.close_connection(control.connection_id, replaced=control.replaced)
        except (ValueError, KeyError, TypeError):
            logger.exception("malformed message on %s", channel)

    # Observation

    def expire(self, now: float) -> None:
        """Redis trims the streams; here, forget marks of threads nobody here subscribes to."""
        if self._member is not None:
            self._marks.keep_only(self._member.subscribed_threads())

    @property
    def thread_log_count(self) -> int:
        return 0

    @property
    def directory(self) -> RedisDirectory:
        return self._directory

    @property
    def entry_count(self) -> int:
        """Leases, users' channels, and the users' channels the Redis client itself still keeps
        a record of (so that the leak checks see a record left behind there too)."""
        pubsub = self._pubsub
        held = pubsub.tracked_channels(self.keys.user_events_prefix) if pubsub is not None else 0
        return len(self._leases) + len(self._channels) + held

    @property
    def traffic(self) -> BackendTraffic:
        return BackendTraffic(
            messages_received=self._messages_received,
            user_channels=self._channels.subscribed_count,
            control_channels=1 if self._pubsub is not None else 0,
            joins=self._channels.joins,
            leaves=self._channels.leaves,
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _quietly(action: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(*_DOWN):
        await action()
