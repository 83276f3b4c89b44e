"""What one user can make the server start or hold over HTTP is bounded: runs (a rate and a cap
on runs at once) and tickets (a rate and a cap on unused ones), each refused with 429 and
``Retry-After``; an embedding without demo runs starts none over HTTP either."""

import asyncio
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import open_socket, receive, send
from wsguard.processes.wait import eventually

NO_RUNS_APP = Path(__file__).with_name("no_runs_app.py")


def _start_run(server: ServerProcess, headers: dict[str, str]) -> httpx.Response:
    return server.http.post("/api/threads/t/runs", json={"text": "go"}, headers=headers)


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1


def test_run_starts_are_rate_limited_per_user(start_server: StartServer) -> None:
    server = start_server("--run-rate-per-user", "0.2", "--max-runs-per-user", "0")
    alice, bob = server.auth("alice"), server.auth("bob")
    assert _start_run(server, alice).status_code == 200
    _assert_refused(_start_run(server, alice))
    assert _start_run(server, bob).status_code == 200, "one user's rate is not another's"


def test_runs_at_once_are_capped_per_user_over_http_and_websocket(start_server: StartServer) -> None:
    server = start_server("--max-runs-per-user", "2", "--run-rate-per-user", "0", "--demo-step-delay", "0.3")
    alice = server.auth("alice")
    assert [_start_run(server, alice).status_code for _ in range(2)] == [200, 200]
    _assert_refused(_start_run(server, alice))

    async def message_refused() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("alice"))
        await send(socket, type="message", thread_id="t", text="go", ref="m")
        frame = await receive(socket)
        assert (frame["type"], frame["code"], frame["ref"]) == ("error", "rate_limited", "m")
        await socket.close()

    asyncio.run(message_refused())
    eventually(
        lambda: _start_run(server, alice).status_code,
        lambda status: status == 200,
        timeout=20.0,
        what="a run slot given back when a run ends",
    )


def test_unused_tickets_are_capped_per_user(start_server: StartServer) -> None:
    server = start_server("--max-tickets-per-user", "3", "--ticket-rate-per-user", "0")
    alice = server.auth("alice")
    tickets = [server.http.post("/api/tickets", headers=alice) for _ in range(3)]
    assert [t.status_code for t in tickets] == [200, 200, 200]
    _assert_refused(server.http.post("/api/tickets", headers=alice))
    assert server.http.post("/api/tickets", headers=server.auth("bob")).status_code == 200

    async def redeem(ticket: str) -> None:
        socket = await connect(f"{server.ws_url}?ticket={ticket}")
        assert (await receive(socket))["type"] == "welcome"
        await socket.close()

    asyncio.run(redeem(tickets[0].json()["ticket"]))
    assert server.http.post("/api/tickets", headers=alice).status_code == 200


def test_ticket_requests_are_rate_limited_per_user(start_server: StartServer) -> None:
    server = start_server("--ticket-rate-per-user", "0.2", "--max-tickets-per-user", "0")
    alice = server.auth("alice")
    assert server.http.post("/api/tickets", headers=alice).status_code == 200
    _assert_refused(server.http.post("/api/tickets", headers=alice))


def test_an_embedding_without_demo_runs_starts_none_over_http(start_server: StartServer) -> None:
    server = start_server(command=[sys.executable, str(NO_RUNS_APP)])
    response = _start_run(server, server.auth("alice"))
    assert response.status_code == 404, response.text
