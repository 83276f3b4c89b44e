"""The one place a backend URL becomes Redis clients: ``redis://``, ``rediss://`` or
``redis-sentinel://``.

With Sentinel, every client is redis-py's ``master_for``: each new connection asks the Sentinels
for the master's address, so a reconnect after a failover (or after the old master, demoted,
refused a write) reaches the new master. A failover may also leave the old master running, with
connections to it that nothing breaks: the backend asks the Sentinels every second
(:meth:`RedisTarget.follow_master`), and the pool never hands out a connection to a server other
than the master they last named. The backend's loops already reconnect, renew and backfill after
any connection loss; a failover is one more such loss.
"""

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff

from wsguard.redis_url import is_sentinel_url, parse_sentinel_url

SENTINEL_TIMEOUT = 1.0
"""Seconds to connect to, or wait for, one Sentinel before asking the next."""


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


class RedisTarget:
    """Clients for one backend URL; :meth:`aclose` closes what they share (the Sentinel clients)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sentinel: Sentinel | None = None
        self._service = ""
        self._master_options: dict[str, Any] = {}
        if is_sentinel_url(url):
            parsed = parse_sentinel_url(url)
            self._service = parsed.service
            self._master_options = {"db": parsed.db, "username": parsed.username, "password": parsed.password}
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(parsed.sentinels),
                sentinel_kwargs={
                    "socket_connect_timeout": SENTINEL_TIMEOUT,
                    "socket_timeout": SENTINEL_TIMEOUT,
                    "retry": Retry(NoBackoff(), 1),
                },
            )

    @property
    def sentinel(self) -> bool:
        return self._sentinel is not None

    def client(self, **options: Any) -> Redis:
        """A client of the URL's Redis, or of the master its Sentinels name now and after failovers."""
        if self._sentinel is None:
            return Redis.from_url(self.url, **options)
        client: Redis = self._sentinel.master_for(
            self._service, connection_pool_class=_MasterPool, **self._master_options, **options
        )
        return client

    async def follow_master(self, *clients: Redis) -> tuple[str, int] | None:
        """Ask the Sentinels which server is the master now, and point each client's pool there
        (the next command goes to the master). A failover may leave the old master running, and
        nothing else would move a connection that stays up. Returns the master's address; None
        without Sentinel."""
        address: tuple[str, int] | None = None
        for client in clients:
            pool = client.connection_pool
            if isinstance(pool, SentinelConnectionPool):
                host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
                address = (str(host), int(port))
        return address

    async def aclose(self) -> None:
        if self._sentinel is not None:
            await self._sentinel.aclose()
