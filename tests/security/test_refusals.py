"""Each refusal of docs/protocol.md section 2, produced through a real socket, before the upgrade."""

import asyncio

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import open_socket, receive


async def _refusal(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, additional_headers=headers, open_timeout=5)
    response = refused.value.response
    return response.status_code, dict(response.headers)


def _bearer(server: ServerProcess, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user_id)}"}


def test_foreign_origin_is_refused_with_403_and_allowed_ones_pass(start_server: StartServer) -> None:
    secret = "s" * 32
    server = start_server("--allowed-origin", "https://app.example", "--jwt-secret", secret, dev=False)
    token = jwt.encode({"sub": "u", "exp": 4_000_000_000}, secret, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    status, _ = asyncio.run(_refusal(server.ws_url, {**headers, "Origin": "https://evil.example"}))
    assert status == 403

    async def allowed(origin: str) -> None:
        socket = await connect(server.ws_url, additional_headers={**headers, "Origin": origin})
        await socket.close()

    asyncio.run(allowed("https://app.example"))
    asyncio.run(allowed(f"http://127.0.0.1:{server.port}"))
    assert server.http.post("/api/dev/tokens", json={"user_id": "u"}).status_code == 404


def test_connect_rate_per_user_answers_429_with_retry_after(start_server: StartServer) -> None:
    server = start_server("--connect-rate-per-user", "2")

    async def burst() -> tuple[int, dict[str, str]]:
        headers = _bearer(server, "eager")
        for _ in range(4):
            socket = await connect(server.ws_url, additional_headers=headers)
            await socket.close()
        return await _refusal(server.ws_url, headers)

    status, headers = asyncio.run(burst())
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert server.metrics()["wsguard_connections_opened_total"] == 4


def test_connect_rate_per_address_answers_429(start_server: StartServer) -> None:
    server = start_server("--connect-rate-per-address", "1", "--connect-rate-per-user", "0")

    async def burst() -> int:
        for user in ("a", "b"):
            socket = await connect(server.ws_url, additional_headers=_bearer(server, user))
            await socket.close()
        status, _ = await _refusal(server.ws_url, _bearer(server, "c"))
        return status

    assert asyncio.run(burst()) == 429


def test_global_cap_answers_503_with_retry_after(start_server: StartServer) -> None:
    server = start_server("--max-connections", "2")

    async def fill() -> tuple[int, dict[str, str]]:
        held = [(await open_socket(server.ws_url, server.token(f"u{n}")))[0] for n in range(2)]
        refused = await _refusal(server.ws_url, _bearer(server, "u3"))
        for socket in held:
            await socket.close()
        return refused

    status, headers = asyncio.run(fill())
    assert status == 503
    assert "retry-after" in headers


def test_tickets_are_single_use_bound_to_their_user_and_cors_enabled(server: ServerProcess) -> None:
    response = server.http.post("/api/tickets", headers=server.auth("ticket-user"))
    ticket = response.json()["ticket"]

    async def use_twice() -> tuple[str, int]:
        socket = await connect(f"{server.ws_url}?ticket={ticket}")
        welcome = await receive(socket)
        await socket.close()
        status, _ = await _refusal(f"{server.ws_url}?ticket={ticket}", {})
        return welcome["user_id"], status

    user_id, second = asyncio.run(use_twice())
    assert user_id == "ticket-user"
    assert second == 401
    assert asyncio.run(_refusal(f"{server.ws_url}?ticket=tkt_forged", {}))[0] == 401
    preflight = server.http.options(
        "/api/tickets",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://app.example")
