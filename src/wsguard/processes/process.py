"""A real ``wsguard serve`` process on a free loopback port, for tests, the harness and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import httpx
import psutil

from wsguard.processes.managed import Managed
from wsguard.processes.metrics import parse_metrics
from wsguard.processes.wait import eventually

IDLE_COUNTS = (
    "wsguard_connections_active",
    "wsguard_users_active",
    "wsguard_user_connections_max",
    "wsguard_registry_entries",
)
"""The series that are 0 when nothing leaked."""


BAD_SETTING = 2
"""The exit status of a command given a bad setting or argument."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def end_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
    """Send ``sig`` unless it has exited, wait for the exit (killing it past ``timeout``); its status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class ServerProcess(Managed):
    """A server in its own process, on a free port, stopped on exit; ``--dev`` unless ``dev=False``.

    ``command`` replaces ``python -m wsguard serve``: it must accept ``--host``, ``--port`` and
    ``--dev`` (the deliberately broken servers of the leak tests do).
    """

    def __init__(
        self,
        *flags: str,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 20.0,
        dev: bool = True,
        ready_path: str = "/healthz",
        tls_ca: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """``tls_ca``: the server serves TLS (``--ssl-certfile``), trust this CA file to reach it.
        ``log_path``: append the server's output (its log) to this file."""
        self.host = "127.0.0.1"
        self.ssl_context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
        base = list(command) if command else [sys.executable, "-m", "wsguard", "serve"]
        self._command = [*base, *(["--dev"] if dev else [])]
        self._flags = flags
        self._env = {**os.environ, **(env or {})}
        self._ready_timeout = ready_timeout
        self._ready_path = ready_path
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._use_port(free_port())

    def _use_port(self, port: int) -> None:
        self.port = port
        secure = "s" if self.ssl_context else ""
        self.base_url = f"http{secure}://{self.host}:{self.port}"
        self.ws_url = f"ws{secure}://{self.host}:{self.port}/ws"
        self.argv = [*self._command, "--host", self.host, "--port", str(self.port), *self._flags]
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0, verify=self.ssl_context or True)

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def start(self, attempts: int = 3) -> Self:
        """Start the process and wait until ``/healthz`` (``ready_path``) answers 200.

        The free port is only free when it was probed: another process may bind it first, and the
        server then exits at start. That is retried on a fresh port, ``attempts`` times in all,
        unless the exit status is 2, a bad setting (``serve``'s, and argparse's, status), which
        another port does not mend.
        """
        if self._log_path is None:
            self.process = subprocess.Popen(self.argv, env=self._env)
        else:
            with open(self._log_path, "ab") as log:
                self.process = subprocess.Popen(self.argv, env=self._env, stdout=log, stderr=log)
        deadline = time.monotonic() + self._ready_timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if attempts > 1 and self.process.returncode != BAD_SETTING:
                    self.http.close()
                    self._use_port(free_port())
                    return self.start(attempts - 1)
                raise RuntimeError(
                    f"server exited with {self.process.returncode}: {self.argv}{self._log_note}"
                )
            try:
                response = self.http.get(self._ready_path, timeout=0.5)
                if response.status_code == 200 and self._listens():
                    return self
                last = response.status_code
            except httpx.TransportError as error:
                last = error
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"server not ready within {self._ready_timeout}s ({last!r}): {self.argv}{self._log_note}"
        )

    @property
    def _log_note(self) -> str:
        """Where to read why the server failed, when its output went to a log rather than here."""
        return "" if self._log_path is None else f"; its output is in {os.fspath(self._log_path)}"

    def _listens(self) -> bool:
        """Whether this process (or a child of it) holds the listening socket, not a stranger."""
        try:
            owner = psutil.Process(self.pid)
            processes = [owner, *owner.children(recursive=True)]
            return any(
                c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                for process in processes
                for c in process.net_connections(kind="tcp")
            )
        except psutil.Error:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Send ``sig``, wait for the exit and return the exit status (killing it past ``timeout``)."""
        if self.process is None:
            return 0
        status = end_process(self.process, sig, timeout)
        self.http.close()
        return status

    def restart(self) -> Self:
        """SIGTERM, wait for the exit, start again on the same port: a rolling restart's step."""
        self.stop()
        self._use_port(self.port)
        return self.start(attempts=1)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself (after a signal sent elsewhere); its status."""
        assert self.process is not None, "server not started"
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def metrics(self) -> dict[str, float]:
        """Scrape ``/metrics`` into flat samples (see :func:`parse_metrics`)."""
        response = self.http.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)

    def wait_idle(self, timeout: float) -> dict[str, float]:
        """Wait until nothing is held (the counts of docs/protocol.md section 7 are all 0)."""
        return eventually(
            self.metrics,
            lambda m: all(m[name] == 0 for name in IDLE_COUNTS),
            timeout=timeout,
            what="connection, user and registry counts back to 0",
        )

    def token(self, user_id: str, *, admin: bool = False, ttl: float | None = None) -> str:
        """A JWT for ``user_id`` from the ``--dev`` token endpoint."""
        body: dict[str, Any] = {"user_id": user_id, "admin": admin}
        if ttl is not None:
            body["ttl"] = ttl
        response = self.http.post("/api/dev/tokens", json=body)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def auth(self, user_id: str, *, admin: bool = False) -> dict[str, str]:
        """The ``Authorization`` header for ``user_id``."""
        return {"Authorization": f"Bearer {self.token(user_id, admin=admin)}"}


StartServer = Callable[..., ServerProcess]
"""A fixture's way to start a server with some flags."""
