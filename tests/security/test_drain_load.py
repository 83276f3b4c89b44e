"""SIGTERM with 5,000 open connections: each is closed with 1001 in batches within the drain
timeout, and the process exits 0."""

import asyncio
import os
import resource
import signal
import time

from websockets.asyncio.client import ClientConnection

from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket

CONNECTIONS = 5000
USERS = 50
DRAIN_TIMEOUT = 30.0


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def test_drain_of_five_thousand_connections() -> None:
    _raise_fd_limit(3 * CONNECTIONS)
    flags = (
        "--connect-rate-per-user", "0", "--max-connections-per-user", str(CONNECTIONS // USERS),
        "--drain-timeout", str(DRAIN_TIMEOUT), "--heartbeat-interval", "60",
    )  # fmt: skip
    server = ServerProcess(*flags).start()
    tokens = [server.token(f"drain-{n}") for n in range(USERS)]

    async def scenario() -> tuple[list[int | None], float]:
        gate = asyncio.Semaphore(100)

        async def one(n: int) -> ClientConnection:
            async with gate:
                socket, _ = await open_socket(server.ws_url, tokens[n % USERS], ping_interval=None)
                return socket

        sockets = await asyncio.gather(*(one(n) for n in range(CONNECTIONS)))
        assert server.metrics()["wsguard_connections_active"] == CONNECTIONS
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in sockets)), DRAIN_TIMEOUT + 5)
        return [s.close_code for s in sockets], time.monotonic() - started

    try:
        codes, drained_in = asyncio.run(scenario())
        exit_status = server.wait(DRAIN_TIMEOUT + 10)
    finally:
        server.kill()
    assert codes.count(1001) == CONNECTIONS, {code: codes.count(code) for code in set(codes)}
    assert exit_status == 0
    assert drained_in < DRAIN_TIMEOUT
    print(f"\ndrained {CONNECTIONS} connections with 1001 in {drained_in:.2f} s")
