"""One Redis or a Redis Cluster: what differs between them, in one small strategy object.

The backend's logic is the same on both; a :class:`Topology` answers the few questions whose
answers differ:

- the clients: redis-py's ``Redis`` for a ``redis://`` URL, its ``RedisCluster`` (which routes
  every command by slot, and follows redirections and failovers) for ``redis-cluster://``;
- key names: on a cluster each user's names carry the hash tag ``{<user>}`` (one slot per user);
- pub/sub: ``PUBLISH``/``SUBSCRIBE`` on one Redis; sharded ``SPUBLISH``/``SSUBSCRIBE`` on a
  cluster, where a channel lives on the node that holds its slot, so that an event is published
  from the script that numbers it and reaches only that node's subscribers (plain ``PUBLISH``
  would be broadcast to every node of the cluster);
- one script for many users (the lease renewal): one pipeline on a Redis; redis-py refuses
  scripts in a cluster pipeline, so there the calls go concurrently, a bounded number at a time;
- before the listener reconnects: a cluster's slot map is read again (a failover moved slots);
  and a cluster client learns the cluster once, before any command is sent concurrently (redis-py
  8.1's ``RedisCluster`` initialised lazily by many concurrent first commands breaks some of their
  connections).

Listeners report subscription changes and messages with the plain kinds (``subscribe``,
``unsubscribe``, ``message``) whichever commands carried them.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from wsguard.redis_cluster_url import is_cluster_url, parse_cluster_url

Client = Redis | RedisCluster
ScriptCall = tuple[list[str], list[str]]
"""The keys and arguments of one script call."""

CLUSTER_SCRIPT_CONCURRENCY = 32
"""Script calls in flight at once on a cluster (each node's pool holds 100 connections)."""
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


class Topology(Protocol):
    """What differs between one Redis and a Redis Cluster (see the module's docstring)."""

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


def topology_for(url: str) -> Topology:
    return ClusterRedis(url) if is_cluster_url(url) else SingleRedis(url)


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
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class _ShardedListener:
    """Sharded pub/sub on a cluster: redis-py's ``ClusterPubSub`` subscribes each channel on the
    node that holds its slot (one connection per node); one reader per node feeds a queue, so a
    message from any node is handed on at once (``ClusterPubSub`` alone polls the nodes in turn,
    waiting the whole timeout on each). A reader that loses its node, or a (un)subscription that
    fails, puts the error in the queue, and the backend's listener reconnects."""

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
                if message is not None:
                    self._queue.put_nowait(message)
        except Exception as error:
            self._queue.put_nowait(error)

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
