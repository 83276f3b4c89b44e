"""The ``--max-connections`` slot an upgrade takes while it is admitted goes back when the client
is gone before the upgrade is accepted: a slot kept would refuse every later upgrade with 503."""

import asyncio
import socket
import struct
import sys
from pathlib import Path

from wsguard.processes import StartServer
from wsguard.processes.clients import open_socket
from wsguard.processes.wait import eventually

SLOW_AUTH_APP = Path(__file__).with_name("slow_auth_app.py")
TASKS = "wsguard_tasks_active"


def test_a_client_gone_before_its_accept_gives_its_slot_back(start_server: StartServer) -> None:
    server = start_server("--max-connections", "1", command=[sys.executable, str(SLOW_AUTH_APP)])
    resting = server.metrics()[TASKS]
    head = (
        "GET /ws HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {server.token('gone')}\r\nX-Auth-Delay: 2\r\n\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=10) as client:
        client.sendall(head.encode())
        eventually(
            lambda: server.metrics()[TASKS],
            lambda tasks: tasks > resting,
            timeout=10,
            what="the upgrade's task",
        )
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    eventually(
        lambda: server.metrics()[TASKS],
        lambda tasks: tasks <= resting,
        timeout=15,
        what="the end of the upgrade's task",
    )

    async def next_client() -> str:
        connection, welcome = await open_socket(server.ws_url, server.token("next"))
        await connection.close()
        return str(welcome["type"])

    assert asyncio.run(next_client()) == "welcome"
