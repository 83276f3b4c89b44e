"""The publisher's Redis transports: one script call per batch (per user on a cluster), with
redis-py's blocking client or its asyncio one. What to send and how to read the reply is
:mod:`wsguard.publisher.plan`'s; here are only the calls and the errors that mean "not taken"."""

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from wsguard.backends.redis import scripts
from wsguard.backends.redis.keyspace import Keys
from wsguard.backends.redis.publishing import PublishPlan, new_epoch
from wsguard.backends.redis.topology import Client, SyncClient, Topology, topology_for
from wsguard.core.publication import BrokerUnavailable, Publication
from wsguard.publisher.plan import PublisherOptions, outgoing, redis_offsets
from wsguard.redis_url import redact_url

_NOT_TAKEN = (RedisError, RedisClusterException, OSError)
"""Redis unreachable, a timeout, a cluster without a master for the slot, a replica refusing
writes: the event is not known to be published (retry with the same idempotency key)."""


def _plan(topology: Topology, options: PublisherOptions) -> PublishPlan:
    return PublishPlan.of(
        Keys(options.prefix, hash_tags=topology.hash_tags),
        topology.publish_command,
        retention_events=options.retention_events,
        retention_seconds=options.retention_seconds,
        idempotency_seconds=options.idempotency_window,
    )


def _unavailable(url: str, error: BaseException) -> BrokerUnavailable:
    what = str(error) or type(error).__name__
    return BrokerUnavailable(f"redis at {redact_url(url)} did not take the events: {what}")


class SyncRedis:
    """Blocking, thread-safe (redis-py's pool), connected on first use."""

    def __init__(self, url: str, options: PublisherOptions) -> None:
        self._url = url
        self._options = options
        self._topology = topology_for(url)
        self._plan = _plan(self._topology, options)
        self._lock = threading.Lock()
        self._client: SyncClient | None = None
        self._script: Script | None = None

    def _connected(self) -> Script:
        with self._lock:
            if self._script is None:
                timeout = self._options.timeout
                client = self._topology.sync_client(
                    socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
                )
                self._client = client
                self._script = client.register_script(scripts.PUBLISH)
            return self._script

    def send(self, items: Sequence[Publication]) -> list[int | None]:
        calls = self._plan.calls(outgoing(items, time.time()), new_epoch())
        try:
            script = self._connected()
            replies = [(indices, script(keys=keys, args=args)) for indices, (keys, args) in calls]
        except _NOT_TAKEN as error:
            raise _unavailable(self._url, error) from error
        return redis_offsets(len(items), replies)

    def close(self) -> None:
        with self._lock:
            client, self._client, self._script = self._client, None, None
        if client is not None:
            client.close()
        self._topology.close_sync()


class AsyncRedis:
    """asyncio; the calls of a batch that spans users on a cluster go at once."""

    def __init__(self, url: str, options: PublisherOptions) -> None:
        self._url = url
        self._options = options
        self._topology = topology_for(url)
        self._plan = _plan(self._topology, options)
        timeout = options.timeout
        self._client: Client = self._topology.client(
            socket_connect_timeout=timeout, socket_timeout=timeout, retry=AsyncRetry(NoBackoff(), 0)
        )
        self._script: AsyncScript = self._client.register_script(scripts.PUBLISH)

    async def send(self, items: Sequence[Publication]) -> list[int | None]:
        calls = self._plan.calls(outgoing(items, time.time()), new_epoch())

        async def call(keys: list[str], args: list[str]) -> Any:
            return await self._script(keys=keys, args=args)

        answered: list[tuple[Sequence[int], Sequence[object]]] = []
        try:
            async with asyncio.timeout(self._options.timeout):
                await self._topology.ready(self._client)
                replies = await asyncio.gather(
                    *(call(keys, args) for _, (keys, args) in calls), return_exceptions=True
                )
            for (indices, _), reply in zip(calls, replies, strict=True):
                if isinstance(reply, BaseException):
                    raise reply
                answered.append((indices, reply))
        except (TimeoutError, *_NOT_TAKEN) as error:
            raise _unavailable(self._url, error) from error
        return redis_offsets(len(items), answered)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._topology.aclose()
