"""The listening socket that ``wsguard serve --workers N`` binds once and every worker accepts on.

A connection accepted on it must have TCP_NODELAY, as on one process: without it each small
write (an HTTP response, a frame) waits for the peer's delayed ACK, about 40 ms.
"""

import asyncio
import socket
import subprocess
import sys

from wsguard.server.workers import bind
from wsguard.settings import Settings


def test_a_connection_accepted_on_the_workers_listener_has_tcp_nodelay() -> None:
    async def accepted_nodelay() -> int:
        listener = bind(Settings(host="127.0.0.1", port=0))
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted: socket.socket = writer.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accept, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(seen, timeout=5.0)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) != 0


SERVE_TWO_WORKERS = [sys.executable, "-m", "wsguard", "serve", "--dev", "--workers", "2"]
SERVE_TWO_WORKERS += ["--backend", "redis://127.0.0.1:1"]  # never reached: the bind fails first


def test_workers_on_a_port_in_use_exit_3_with_one_line() -> None:
    """As one process does (uvicorn's start-up failure): no traceback, the address named."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*SERVE_TWO_WORKERS, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]
