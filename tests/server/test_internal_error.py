"""A handler that raises closes its own connection with 1011 ``internal_error``; others live on."""

import asyncio
import sys
from pathlib import Path

from wsguard.testing import ServerProcess
from wsguard.testing.clients import open_socket, receive, send

APP = Path(__file__).with_name("crashing_app.py")


def test_a_failing_handler_closes_only_its_connection_with_1011() -> None:
    with ServerProcess(command=[sys.executable, str(APP)]) as server:

        async def scenario() -> tuple[int | None, str | None]:
            victim, _ = await open_socket(server.ws_url, server.token("u"))
            bystander, _ = await open_socket(server.ws_url, server.token("u"))
            await send(victim, type="crash")
            await asyncio.wait_for(victim.wait_closed(), 5)
            await send(bystander, type="ping", ref="alive")
            assert await receive(bystander) == {"type": "pong", "ref": "alive"}
            await bystander.close()
            return victim.close_code, victim.close_reason

        assert asyncio.run(scenario()) == (1011, "internal_error")
        metrics = server.wait_idle(timeout=1.0)
        assert metrics['wsguard_connections_closed_total{reason="internal_error"}'] == 1
        assert metrics["wsguard_sweeper_repairs_total"] == 0


WRITER_APP = Path(__file__).with_name("crashing_writer_app.py")


def test_a_failing_writer_closes_its_connection_with_1011() -> None:
    with ServerProcess(command=[sys.executable, str(WRITER_APP)]) as server:

        async def scenario() -> tuple[int | None, str | None]:
            victim, _ = await open_socket(server.ws_url, server.token("u"))
            bystander, _ = await open_socket(server.ws_url, server.token("u"))
            await send(victim, type="poison")
            await asyncio.wait_for(victim.wait_closed(), 5)
            await send(bystander, type="ping", ref="alive")
            assert await receive(bystander) == {"type": "pong", "ref": "alive"}
            await bystander.close()
            return victim.close_code, victim.close_reason

        assert asyncio.run(scenario()) == (1011, "internal_error")
        metrics = server.wait_idle(timeout=2.0)
        assert metrics['wsguard_connections_closed_total{reason="internal_error"}'] == 1
