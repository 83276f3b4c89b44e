"""The probe middleware in a real uvicorn process, counted over real WebSocket connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.leaktest.generic.support import APPS, ROOT
from wsguard.leaktest.generic.asgi_app import serve_asgi_app
from wsguard.probe import (
    BLOCKS,
    DEFAULT_PATH,
    FDS,
    RSS,
    SCOPES_OPEN,
    SCOPES_OPENED,
    TASKS,
    ProbeMiddleware,
    app_count_key,
    instrument,
)
from wsguard.processes import ServerProcess, eventually, parse_metrics

ACTIVE = app_count_key("active_connections")


def scrape(server: ServerProcess, path: str = DEFAULT_PATH) -> dict[str, float]:
    response = server.http.get(path)
    response.raise_for_status()
    return parse_metrics(response.text)


async def open_clients(server: ServerProcess, count: int) -> list[ClientConnection]:
    return [await connect(f"ws://{server.host}:{server.port}/ws/c{i}") for i in range(count)]


def test_counts_scopes_tasks_and_the_apps_own_counts() -> None:
    with serve_asgi_app(f"{APPS}.connection_manager:fixed", app_dir=ROOT) as server:
        before = scrape(server)
        assert before[SCOPES_OPEN] == 0
        assert before[ACTIVE] == 0
        assert {FDS, RSS, BLOCKS, TASKS} <= before.keys()
        assert before[RSS] > 1_000_000

        async def hold_three() -> None:
            clients = await open_clients(server, 3)
            held = eventually(lambda: scrape(server), lambda m: m[ACTIVE] == 3, timeout=10, what="3 held")
            assert held[SCOPES_OPEN] == 3
            assert held[SCOPES_OPENED] == before[SCOPES_OPENED] + 3
            assert held[FDS] >= before[FDS] + 3
            assert held[TASKS] > before[TASKS]
            for client in clients:
                await client.close()

        asyncio.run(hold_three())
        after = eventually(lambda: scrape(server), lambda m: m[SCOPES_OPEN] == 0, timeout=10, what="closed")
        assert after[ACTIVE] == 0
        assert after[SCOPES_OPENED] == before[SCOPES_OPENED] + 3
        collected = parse_metrics(server.http.get(DEFAULT_PATH, params={"collect_garbage": "1"}).text)
        assert collected[BLOCKS] > 0


def test_an_outer_probe_reports_the_counts_an_inner_probe_was_given() -> None:
    with serve_asgi_app(f"{APPS}.connection_manager:leaky", app_dir=ROOT, probe_path="/outer") as server:
        assert scrape(server, "/outer")[ACTIVE] == 0


def test_serves_nothing_unless_enabled() -> None:
    command = [sys.executable, "-m", "uvicorn", f"{APPS}.connection_manager:fixed", "--app-dir", str(ROOT)]
    env = {"WSGUARD_PROBE": ""}
    with ServerProcess(command=command, dev=False, ready_path="/docs", env=env) as server:
        assert server.http.get(DEFAULT_PATH).status_code == 404


def test_instrument_returns_the_app_itself_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    monkeypatch.delenv("WSGUARD_PROBE", raising=False)
    assert instrument(app) is app
    monkeypatch.setenv("WSGUARD_PROBE", "1")
    assert isinstance(instrument(app), ProbeMiddleware)
    with pytest.raises(ValueError, match="must start with '/'"):
        ProbeMiddleware(app, path="metrics")


def test_importing_the_probe_loads_no_web_framework() -> None:
    code = (
        "import sys, wsguard.probe; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'fastapi', 'uvicorn', 'jwt', 'websockets', 'httpx', 'redis'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
