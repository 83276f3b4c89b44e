"""Races around the drain, against a real ``wsguard serve`` process: readiness turns 503 in the
signal handler itself, and a connection whose admission was still awaiting when the drain began
is refused or closed with 1001 instead of holding the shutdown for ``--drain-timeout``."""

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsguard.processes import StartServer


def test_readyz_answers_503_from_the_moment_sigterm_arrives(start_server: StartServer) -> None:
    server = start_server()
    assert server.process is not None
    after: list[int] = []
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        assert http.get("/readyz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        for _ in range(20):
            try:
                after.append(http.get("/readyz").status_code)
            except httpx.TransportError:
                break
    assert after, "the server stopped listening before the drain"
    assert set(after) == {503}, f"/readyz after SIGTERM answered {after}"
    assert server.wait(timeout=15) == 0


SLOW_AUTH_APP = Path(__file__).with_name("slow_auth_app.py")


def test_an_upgrade_admitted_during_the_drain_is_refused_and_holds_no_shutdown(
    start_server: StartServer,
) -> None:
    server = start_server("--drain-timeout", "20", command=[sys.executable, str(SLOW_AUTH_APP)])
    assert server.process is not None
    headers = {"Authorization": f"Bearer {server.token('late')}", "X-Auth-Delay": "1.5"}

    async def late_upgrade() -> int | str:
        try:
            socket = await connect(server.ws_url, additional_headers=headers, open_timeout=10)
        except InvalidStatus as refused:
            return refused.response.status_code
        try:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            return str(frame["type"])
        except ConnectionClosed:
            return f"closed {socket.close_code}"

    async def scenario() -> int | str:
        upgrade = asyncio.create_task(late_upgrade())
        await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        return await upgrade

    started = time.monotonic()
    outcome = asyncio.run(scenario())
    assert outcome in (503, "closed 1001"), f"an upgrade admitted during the drain got {outcome!r}"
    assert server.wait(timeout=15) == 0
    assert time.monotonic() - started < 10, "the drain waited for a connection it never closed"
