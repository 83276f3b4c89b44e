"""One Redis, a master watched by Sentinels, or a Redis Cluster: the one place a backend URL
becomes Redis clients, and what differs between them, in one small strategy object.

The backend's logic is the same on all three; a :class:`Topology` answers the few questions whose
answers differ:

- the clients: redis-py's ``Redis`` for a ``redis://`` URL; for ``redis-sentinel://``, its
  ``Sentinel.master_for``, whose every new connection asks the Sentinels for the master's address
  (so a reconnect after a failover reaches the new master); for ``redis-cluster://``, its
  ``RedisCluster`` (which routes every command by slot, and follows redirections and failovers);
  asyncio clients for the backend, and the same three blocking ones (``sync_client``) for the
  publisher of a worker process without an event loop;
- key names: on a cluster each user's names carry the hash tag ``{<user>}`` (one slot per user);
- pub/sub: ``PUBLISH``/``SUBSCRIBE`` on one Redis (Sentinel's master included); sharded
  ``SPUBLISH``/``SSUBSCRIBE`` on a cluster, where a channel lives on the node that holds its
  slot, so that an event is published from the script that numbers it and reaches only that
  node's subscribers (plain ``PUBLISH`` would be broadcast to every node of the cluster); the
  cluster listener holds one plain ``PubSub`` per node itself (see :class:`_ShardedListener`);
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
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.client import Redis as BlockingRedis
from redis.cluster import ClusterNode as BlockingNode
from redis.cluster import RedisCluster as BlockingCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel as BlockingSentinel

from wsguard.cancellation import raise_if_cancelled
from wsguard.redis_url import is_cluster_url, is_sentinel_url, parse_cluster_url, parse_sentinel_url

Client = Redis | RedisCluster
SyncClient = BlockingRedis | BlockingCluster
"""A blocking client, for :class:`wsguard.publisher.Publisher` in a worker without an event loop."""
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

    def sync_client(self, **options: Any) -> SyncClient:
        """A blocking client to the same Redis (a cluster's connects to its nodes at once)."""
        ...

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

    def close_sync(self) -> None:
        """Close what the blocking clients share."""
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

    def sync_client(self, **options: Any) -> SyncClient:
        return BlockingRedis.from_url(self.url, **options)

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

    def close_sync(self) -> None:
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
        self._sentinels = list(parsed.sentinels)
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            self._sentinels,
            sentinel_kwargs={
                "socket_connect_timeout": SENTINEL_TIMEOUT,
                "socket_timeout": SENTINEL_TIMEOUT,
                "retry": Retry(NoBackoff(), 1),
            },
        )
        self._sync_sentinel: BlockingSentinel | None = None

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
        """Each Sentinel's client (redis-py's ``Sentinel.aclose`` came only in 8.1)."""
        for sentinel in self._sentinel.sentinels:
            await sentinel.aclose()

    def sync_client(self, **options: Any) -> SyncClient:
        if self._sync_sentinel is None:
            self._sync_sentinel = BlockingSentinel(
                self._sentinels,
                sentinel_kwargs={
                    "socket_connect_timeout": SENTINEL_TIMEOUT,
                    "socket_timeout": SENTINEL_TIMEOUT,
                },
            )
        client: BlockingRedis = self._sync_sentinel.master_for(
            self._service, **self._master_options, **options
        )
        return client

    def close_sync(self) -> None:
        if self._sync_sentinel is not None:
            for sentinel in self._sync_sentinel.sentinels:
                sentinel.close()


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
        self._options: weakref.WeakKeyDictionary[RedisCluster, dict[str, Any]] = weakref.WeakKeyDictionary()
        """Each client's options, for the listener's own connection to each node."""

    def client(self, **options: Any) -> Client:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._nodes],
            username=self._username,
            password=self._password,
            **options,
        )
        self._options[client] = options
        return client

    def sync_client(self, **options: Any) -> SyncClient:
        nodes = [
            BlockingNode(host, port)  # type: ignore[no-untyped-call, unused-ignore]
            for host, port in self._nodes
        ]
        return BlockingCluster(
            startup_nodes=nodes,
            username=self._username,
            password=self._password,
            **options,
        )

    def listener(self, client: Client) -> Listener:
        assert isinstance(client, RedisCluster)
        options = self._options.get(client, {})

        def node_client(node: ClusterNode) -> Redis:
            return Redis(
                host=node.host,
                port=int(node.port),
                username=self._username,
                password=self._password,
                **options,
            )

        return _ShardedListener(client, node_client)

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

    def close_sync(self) -> None:
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


@dataclass(eq=False)
class _Shard:
    """One node's sharded subscriptions: a plain ``PubSub`` on a client of its own."""

    name: str
    redis: Redis
    pubsub: PubSub
    wanted: set[str] = field(default_factory=set)
    """The channels subscribed, or being subscribed, here (updated before each command is sent)."""
    reader: asyncio.Task[None] | None = None

    def holds(self, channel: str) -> bool:
        """Whether this node has the channel, or redis-py's ``PubSub`` still keeps a record of it."""
        records = self.pubsub.shard_channels
        return channel in self.wanted or channel in records or channel.encode() in records

    async def aclose(self) -> None:
        try:
            await self.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        finally:
            await self.redis.aclose()


class _ShardedListener:
    """Sharded pub/sub on a cluster: each channel is subscribed on the node that holds its slot,
    with one plain ``PubSub`` per node, and one reader per node feeds a queue, so a message from
    any node is handed on at once. A reader that loses its node, or a (un)subscription that fails,
    puts the error in the queue, and the backend's listener reconnects. A node's ``PubSub`` is
    closed, and its reader ends, once it holds no channel.

    Not redis-py's ``ClusterPubSub``: in 8.2 its ``ssubscribe``/``sunsubscribe`` wait for a
    per-node lock that ``get_sharded_message(timeout=...)`` holds for its whole wait, so a reader
    waiting on a quiet node delayed every join and leave there by up to :data:`_READ_WAIT` (and
    in 8.1 its records could keep a channel already left). A plain ``PubSub`` per node is the
    public API the single-Redis listener uses too: it sends while another task reads.
    """

    def __init__(self, client: RedisCluster, node_client: Callable[[ClusterNode], Redis]) -> None:
        self._client = client
        self._node_client = node_client
        self._shards: dict[str, _Shard] = {}
        """The node's shard by node name: where a new subscription there goes."""
        self._open: set[_Shard] = set()
        """Every shard not yet closed (including one its reader is retiring)."""
        self._queue: asyncio.Queue[dict[str, Any] | Exception] = asyncio.Queue()
        self._closed = False

    async def subscribe(self, *channels: str) -> None:
        try:
            for channel in channels:
                node = self._client.get_node_from_key(channel)
                if node is None:
                    raise RedisClusterException(f"no node serves the slot of {channel}")
                shard = self._shard(node)
                shard.wanted.add(channel)
                await shard.pubsub.ssubscribe(channel)
                await self._check_open(shard)
                if shard.reader is None:
                    name = f"wsguard redis shard {shard.name}"
                    shard.reader = asyncio.create_task(self._read(shard), name=name)
        except Exception as error:
            self._fail(error)
            raise

    async def unsubscribe(self, *channels: str) -> None:
        try:
            for channel in channels:
                shard = next((shard for shard in self._shards.values() if shard.holds(channel)), None)
                if shard is None:
                    # No connection here holds it: it is left already (say, a resent leave).
                    left = {"type": "sunsubscribe", "pattern": None, "channel": channel, "data": 0}
                    self._queue.put_nowait(left)
                    continue
                shard.wanted.discard(channel)
                await shard.pubsub.sunsubscribe(channel)
                await self._check_open(shard)
        except Exception as error:
            self._fail(error)
            raise

    def _shard(self, node: ClusterNode) -> _Shard:
        if self._closed:
            raise RedisConnectionError("the listener is closed")
        shard = self._shards.get(node.name)
        if shard is None:
            redis = self._node_client(node)
            shard = _Shard(node.name, redis, redis.pubsub())
            self._shards[node.name] = shard
            self._open.add(shard)
        return shard

    async def _check_open(self, shard: _Shard) -> None:
        """After a command: if the listener was closed meanwhile, close the shard again (a
        ``PubSub`` sending after its ``aclose`` opens a new connection)."""
        if self._closed:
            await shard.aclose()
            raise RedisConnectionError("the listener is closed")

    def _fail(self, error: Exception) -> None:
        """A (un)subscription failed: most likely the slot map is stale (a failover moved the
        channel's slot while the nodes this listener reads stayed up). Hand the error to the
        reading side too, so that the listener reconnects and reads the map again."""
        self._queue.put_nowait(error)

    async def _read(self, shard: _Shard) -> None:
        """Read one node's messages until its ``PubSub`` holds nothing, then close it."""
        try:
            while True:
                raise_if_cancelled()
                if self._client.get_node(node_name=shard.name) is None:
                    raise RedisConnectionError(f"node {shard.name} left the cluster")
                message: dict[str, Any] | None = await shard.pubsub.get_message(timeout=_READ_WAIT)
                if message is None:
                    continue
                self._queue.put_nowait(message)
                if message.get("type") == "sunsubscribe" and not shard.wanted and not shard.pubsub.subscribed:
                    break
        except Exception as error:
            self._queue.put_nowait(error)
            return
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        await shard.aclose()
        self._open.discard(shard)

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
        """Stop the readers and close every node's connection (best effort: the listener is
        going away, and one node that fails to close must not keep the others open)."""
        self._closed = True
        shards, self._open = list(self._open), set()
        self._shards.clear()
        readers = [shard.reader for shard in shards if shard.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(shard.aclose() for shard in shards), return_exceptions=True)

    def tracked_channels(self, prefix: str) -> int:
        return _count_named({name for shard in self._open for name in shard.pubsub.shard_channels}, prefix)

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
