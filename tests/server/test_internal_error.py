"""A handler that raises closes its own connection with 1011 ``internal_error``; others live on."""

import asyncio
import sys
from pathlib import Path

import pytest

from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive, send
from wsguard.processes.wait import eventually

APP = Path(__file__).with_name("crashing_app.py")
WRITER_APP = Path(__file__).with_name("crashing_writer_app.py")


@pytest.mark.parametrize(
    ("app", "command", "idle_timeout"),
    [(APP, "crash", 5.0), (WRITER_APP, "poison", 2.0)],
    ids=["failing_handler", "failing_writer"],
)
def test_a_failure_closes_only_its_connection_with_1011(app: Path, command: str, idle_timeout: float) -> None:
    """A handler that raises, or a write that fails unexpectedly."""
    with ServerProcess(command=[sys.executable, str(app)]) as server:

        async def scenario() -> tuple[int | None, str | None]:
            victim, _ = await open_socket(server.ws_url, server.token("u"))
            bystander, _ = await open_socket(server.ws_url, server.token("u"))
            await send(victim, type=command)
            await asyncio.wait_for(victim.wait_closed(), 5)
            await send(bystander, type="ping", ref="alive")
            assert await receive(bystander) == {"type": "pong", "ref": "alive"}
            await bystander.close()
            return victim.close_code, victim.close_reason

        assert asyncio.run(scenario()) == (1011, "internal_error")
        metrics = server.wait_idle(timeout=idle_timeout)
        assert metrics['wsguard_connections_closed_total{reason="internal_error"}'] == 1
        assert metrics["wsguard_sweeper_repairs_total"] == 0


def test_a_failing_run_is_logged_and_gives_its_slot_back(tmp_path: Path) -> None:
    """A run whose first event is over ``--max-message-bytes`` fails in the background: the
    failure is in the server's log, and the user's run slot is free again."""
    log = tmp_path / "server.log"
    serve = f'exec "{sys.executable}" -m wsguard serve "$@" 2>>"{log}"'
    flags = ("--max-message-bytes", "150", "--max-runs-per-user", "1", "--run-rate-per-user", "0")
    with ServerProcess(*flags, command=["sh", "-c", serve, "wsguard"]) as server:
        headers = server.auth("runner")
        for _ in range(2):
            response = server.http.post("/api/threads/t/runs", json={"text": "x" * 200}, headers=headers)
            assert response.status_code == 200, response.text
            _wait_for_line(log, f"run {response.json()['run_id']} failed")
    assert "EventTooLarge" in log.read_text()


def _wait_for_line(log: Path, line: str) -> None:
    eventually(log.read_text, lambda text: line in text, timeout=10.0, what=f"{line!r} logged")
