"""One Redis, a master watched by Sentinels, or a Redis Cluster: the one place a backend URL
becomes Redis clients, and what differs between them, in one small strategy object.

The backend's logic is the same on all three; a :class:`Topology` answers the few questions whose
answers differ:

- the clients: redis-py's ``Redis`` for a ``redis://`` URL; for ``redis-sentinel://``, its
  ``Sentinel.master_for``, whose every new connection asks the Sentinels for the master's address
  (so a reconnect after a failover reaches the new master); for ``redis-cluster://``, its
  ``RedisCluster`` (which routes every command by slot, and follows redirections and failovers);
- key names: on a cluster each user's names carry the hash tag ``{<user>}`` (one slot per user);
- pub/sub: ``PUBLISH``/``SUBSCRIBE`` on one Redis (Sentinel's master included); sharded
  ``SPUBLISH``/``SSUBSCRIBE`` on a cluster, where a channel lives on the node that holds its
  slot, so that an event is published from the script that numbers it and reaches only that
  node's subscribers (plain ``PUBLISH`` would be broadcast to every node of the cluster);
- one script for many users (the lease renewal): one pipeline on a Redis; redis-py refuses
  scripts in a cluster pipeline, so there the calls go concurrently, a bounded number at a time;
- before the listener reconnects: a cluster's slot map is read again (a failover moved slots);
  and a cluster client learns the cluster once, before any command is sent concurrently (redis-py
  8.1's ``RedisCluster`` initialised lazily by many concurrent first commands breaks some of their
  connections);
- following the master: with Sentinel, a failover may leave the old master running, with
  connections to it that nothing breaks; the backend asks every second
  (:meth:`Topology.follow_master`) which server the Sentinels name, and the pool never hands out
  a connection to a server other than that one. One Redis has no master to follow, and a
  cluster's client follows its masters by itself (a demoted node answers ``MOVED``, and drops
  its sharded subscribers).

Listeners report subscription changes and messages with the plain kinds (``subscribe``,
``unsubscribe``, ``message``) whichever commands carried them.
"""

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from wsguard.redis_url import is_cluster_url, is_sentinel_url, parse_cluster_url, parse_sentinel_url

Client = Redis | RedisCluster
ScriptCall = tuple[list[str], list[str]]
"""The keys and arguments of one script call."""

Address = tuple[str, int]

CLUSTER_SCRIPT_CONCURRENCY = 32
"""Script calls in flight at once on a cluster (each node's pool holds 100 connections)."""
SENTINEL_TIMEOUT = 1.0
"""Seconds to connect to, or wait for, one Sentinel before asking the next."""
_READ_WAIT = 1.0
"""Seconds one node's reader waits for a message before looking again (a node left behind ends it)."""
_SHARDED_KINDS = {"ssubscribe": "subscribe", "sunsubscribe": "unsubscribe", "smessage": "message"}


class Listener(Protocol):
    """The backend's pub/sub connection(s)."""

    async def subscribe(self, *channels: str) -> None: ...

    async def unsubscribe(self, *channels: str) -> None: ...

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message or (un)subscription confirmation, None after ``timeout`` seconds."""
        ...

    async def aclose(self) -> None: ...

    def tracked_channels(self, prefix: str) -> int:
        """How many channels named ``prefix...`` the Redis client keeps a record of (it would
        subscribe to them again by itself after a reconnect): 0 once they are all left."""
        ...

    @property
    def server(self) -> Address | None:
        """The server this listener reads while it holds one connection; None before it connects,
        and on a cluster (one connection per node)."""
        ...


class Topology(Protocol):
    """What differs between one Redis, a Sentinel-watched master and a Redis Cluster (see the
    module's docstring)."""

    hash_tags: bool
    publish_command: str

    def client(self, **options: Any) -> Client: ...

    def listener(self, client: Client) -> Listener: ...

    async def ready(self, client: Client) -> None:
        """Before the first commands: learn the cluster if the client has not yet (idempotent)."""
        ...

    async def refresh(self, client: Client) -> None:
        """Before (re)subscribing: learn where things are now."""
        ...

    async def run_script(self, client: Client, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
        """Each call's reply, in order; a call that failed has its exception in its place."""
        ...

    async def follow_master(self, *clients: Client) -> Address | None:
        """With Sentinel: ask which server is the master now, point each client's pool there (the
        next command goes to it) and return its address. None where there is no master to follow."""
        ...

    async def aclose(self) -> None:
        """Close what the clients share (the connections to the Sentinels)."""
        ...


def topology_for(url: str) -> Topology:
    if is_cluster_url(url):
        return ClusterRedis(url)
    if is_sentinel_url(url):
        return SentinelRedis(url)
    return SingleRedis(url)


class SingleRedis:
    """One Redis (a master) at a ``redis://`` or ``rediss://`` URL."""

    hash_tags = False
    publish_command = "PUBLISH"

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, **options: Any) -> Client:
        return Redis.from_url(self.url, **options)

    def listener(self, client: Client) -> Listener:
        assert isinstance(client, Redis)
        return _PlainListener(client.pubsub())

    async def ready(self, client: Client) -> None:
        return None

    async def refresh(self, client: Client) -> None:
        return None

    async def run_script(self, client: Client, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
        assert isinstance(client, Redis)
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def follow_master(self, *clients: Client) -> Address | None:
        return None

    async def aclose(self) -> None:
        return None


class SentinelRedis(SingleRedis):
    """The master that the Sentinels a ``redis-sentinel://`` URL names know by its service name:
    one Redis at a time, which a failover replaces."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parsed = parse_sentinel_url(url)
        self._service = parsed.service
        self._master_options: dict[str, Any] = {
            "db": parsed.db,
            "username": parsed.username,
            "password": parsed.password,
        }
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(parsed.sentinels),
            sentinel_kwargs={
                "socket_connect_timeout": SENTINEL_TIMEOUT,
                "socket_timeout": SENTINEL_TIMEOUT,
                "retry": Retry(NoBackoff(), 1),
            },
        )

    def client(self, **options: Any) -> Client:
        client: Redis = self._sentinel.master_for(
            self._service, connection_pool_class=_MasterPool, **self._master_options, **options
        )
        return client

    async def follow_master(self, *clients: Client) -> Address | None:
        address: Address | None = None
        for client in clients:
            pool = client.connection_pool if isinstance(client, Redis) else None
            if isinstance(pool, SentinelConnectionPool):
                host, port = await pool.get_master_address()  # type: ignore[no-untyped-call, unused-ignore]
                address = (str(host), int(port))
        return address

    async def aclose(self) -> None:
        await self._sentinel.aclose()


class _MasterPool(SentinelConnectionPool):
    """Hands out no connection to a server other than the master the Sentinels last named: a
    connection busy when the pool learnt of a failover went back to the pool still connected to
    the old master, which keeps taking writes until the Sentinels demote it."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        master = self.master_address
        if (
            isinstance(connection, SentinelManagedConnection)
            and connection.is_connected
            and master is not None
            and (connection.host, connection.port) != master
        ):
            await connection.disconnect()
        await super().ensure_connection(connection)


class ClusterRedis:
    """A Redis Cluster found from the nodes a ``redis-cluster://`` URL names."""

    hash_tags = True
    publish_command = "SPUBLISH"

    def __init__(self, url: str) -> None:
        parsed = parse_cluster_url(url)
        self._nodes = parsed.nodes
        self._username, self._password = parsed.username, parsed.password

    def client(self, **options: Any) -> Client:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
            username=self._username,
            password=self._password,
            **options,
        )

    def listener(self, client: Client) -> Listener:
        assert isinstance(client, RedisCluster)
        return _ShardedListener(client)

    async def ready(self, client: Client) -> None:
        assert isinstance(client, RedisCluster)
        await client.initialize()

    async def refresh(self, client: Client) -> None:
        assert isinstance(client, RedisCluster)
        await client.initialize()
        await client.nodes_manager.initialize()

    async def run_script(self, client: Client, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
        await self.ready(client)
        room = asyncio.Semaphore(CLUSTER_SCRIPT_CONCURRENCY)

        async def call(keys: list[str], args: list[str]) -> Any:
            async with room:
                try:
                    return await script(keys=keys, args=args)
                except Exception as error:
                    return error

        return list(await asyncio.gather(*(call(keys, args) for keys, args in calls)))

    async def follow_master(self, *clients: Client) -> Address | None:
        return None

    async def aclose(self) -> None:
        return None


class _PlainListener:
    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._pubsub.unsubscribe(*channels)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await self._pubsub.get_message(timeout=timeout)
        return message

    async def aclose(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    def tracked_channels(self, prefix: str) -> int:
        return _count_named(self._pubsub.channels, prefix)

    @property
    def server(self) -> Address | None:
        connection = self._pubsub.connection
        return (connection.host, connection.port) if isinstance(connection, Connection) else None


class _ShardedListener:
    """Sharded pub/sub on a cluster: redis-py's ``ClusterPubSub`` subscribes each channel on the
    node that holds its slot (one connection per node); one reader per node feeds a queue, so a
    message from any node is handed on at once (``ClusterPubSub`` alone polls the nodes in turn,
    waiting the whole timeout on each). A reader that loses its node, or a (un)subscription that
    fails, puts the error in the queue, and the backend's listener reconnects. A reader also
    makes ``ClusterPubSub`` forget a channel it left (see :meth:`_forget_if_left`)."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._pubsub: ClusterPubSub = client.pubsub()
        self._queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        self._readers: dict[str, asyncio.Task[None]] = {}

    async def subscribe(self, *channels: str) -> None:
        try:
            await self._pubsub.ssubscribe(*channels)
        except Exception as error:
            self._fail(error)
            raise
        for name in self._pubsub.node_pubsub_mapping:
            reader = self._readers.get(name)
            if reader is None or reader.done():
                self._readers[name] = asyncio.create_task(
                    self._read(name), name=f"wsguard redis shard {name}"
                )

    async def unsubscribe(self, *channels: str) -> None:
        try:
            await self._pubsub.sunsubscribe(*channels)
        except Exception as error:
            self._fail(error)
            raise

    def _fail(self, error: Exception) -> None:
        """A (un)subscription failed: most likely the slot map is stale (a failover moved the
        channel's slot while the nodes this listener reads stayed up). Hand the error to the
        reading side too, so that the listener reconnects and reads the map again."""
        self._queue.put_nowait(error)

    async def _read(self, name: str) -> None:
        """Read one node's messages for as long as something is subscribed there."""
        try:
            while name in self._pubsub.node_pubsub_mapping:
                node = self._client.get_node(node_name=name)
                if node is None:
                    raise RedisConnectionError(f"node {name} left the cluster")
                message = await self._pubsub.get_sharded_message(timeout=_READ_WAIT, target_node=node)
                if message is None:
                    continue
                if message.get("type") == "sunsubscribe":
                    await self._forget_if_left(message["channel"])
                self._queue.put_nowait(message)
        except Exception as error:
            self._queue.put_nowait(error)

    async def _forget_if_left(self, channel: object) -> None:
        """After redis-py has handled a ``SUNSUBSCRIBE`` confirmation: drop the channel from
        ``ClusterPubSub``'s own records when no node's ``PubSub`` holds it any more.

        redis-py 8.1's ``ClusterPubSub.sunsubscribe`` marks a channel as being left only after
        the node's ``PubSub`` has sent ``SUNSUBSCRIBE``, by copying that ``PubSub``'s pending
        set. The send yields (``asyncio.wait_for`` around the write), and when this node's
        reader takes the confirmation meanwhile, the node's ``PubSub`` forgets the channel but
        ``ClusterPubSub`` finds it not pending and keeps it in ``shard_channels`` and in its
        channel-to-node index for as long as the listener lives: one record per user whose
        leave met the race, which a busy event loop makes common. Under ``ClusterPubSub``'s
        own lock no (un)subscription is half done, so a channel that no node holds is left.
        """
        pubsub = self._pubsub
        lock = getattr(pubsub, "_shard_state_lock", None)
        async with lock if isinstance(lock, asyncio.Lock) else contextlib.nullcontext():
            if any(channel in node.shard_channels for node in pubsub.node_pubsub_mapping.values()):
                return
            pubsub.shard_channels.pop(channel, None)
            pubsub.pending_unsubscribe_shard_channels.discard(channel)
            index = getattr(pubsub, "_shard_channel_to_node", None)
            if isinstance(index, dict):
                index.pop(channel, None)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            raise item
        kind = item.get("type")
        return {**item, "type": _SHARDED_KINDS.get(kind, kind) if isinstance(kind, str) else kind}

    async def aclose(self) -> None:
        for reader in self._readers.values():
            reader.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        self._readers.clear()
        await self._pubsub.aclose()

    def tracked_channels(self, prefix: str) -> int:
        index = getattr(self._pubsub, "_shard_channel_to_node", None)
        names = {*self._pubsub.shard_channels, *(index if isinstance(index, dict) else ())}
        return _count_named(names, prefix)

    @property
    def server(self) -> Address | None:
        return None


def _count_named(names: Iterable[object], prefix: str) -> int:
    """How many of ``names`` (bytes, or text when the client decodes) start with ``prefix``."""
    encoded = prefix.encode()
    return sum(
        1
        for name in names
        if (name.startswith(encoded) if isinstance(name, bytes) else str(name).startswith(prefix))
    )
