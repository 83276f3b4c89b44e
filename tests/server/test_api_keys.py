"""API keys on the server API: accepted on ``POST /api/publish`` and ``/api/admin/*`` in either
header, several at once and re-read from their file, refused (401) when wrong, never a user
(no socket, no ticket), and never in the log."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsguard.logs import hide, redact
from wsguard.processes import ServerProcess, StartServer, eventually
from wsguard.processes.clients import open_socket
from wsguard.server.api_keys import FILE_CHECK_SECONDS

ADMIN_READS = [
    "/api/admin/presence",
    "/api/admin/presence?user_id=someone",
    "/api/admin/instances",
    "/api/admin/overview",
    "/api/admin/users/someone",
    "/api/admin/users/someone/connections",
    "/api/admin/leakcheck",
]
ADMIN_DELETES = ["/api/admin/users/someone", "/api/admin/users/someone/connections"]


def _key(name: str) -> str:
    return f"{name}-{secrets.token_urlsafe(24)}"


def _publish(server: ServerProcess, headers: dict[str, str]) -> int:
    body = {"user_id": "someone", "thread_id": "t-1", "event": "note", "data": {"n": 1}}
    return server.http.post("/api/publish", json=body, headers=headers).status_code


def _statuses(server: ServerProcess, headers: dict[str, str]) -> list[int]:
    """The status of publish and every admin endpoint with these headers."""
    http = server.http
    return [
        _publish(server, headers),
        *(http.get(path, headers=headers).status_code for path in ADMIN_READS),
        *(http.delete(path, headers=headers).status_code for path in ADMIN_DELETES),
    ]


async def _upgrade_status(server: ServerProcess, headers: dict[str, str]) -> int:
    try:
        socket = await connect(server.ws_url, additional_headers=headers)
    except InvalidStatus as refused:
        return refused.response.status_code
    await socket.close()
    return 101


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_api_keys_open_publish_and_admin_endpoints_and_nothing_else(
    start_server: StartServer, tmp_path: Path, log_format: str
) -> None:
    flag_keys, file_key, next_key, wrong = _key("flag-a"), _key("file"), _key("next"), _key("wrong")
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# rotated monthly\n\n  {file_key}  \n")
    log = tmp_path / "server.log"
    server = start_server(
        "--api-key",
        flag_keys,
        "--api-key-file",
        str(keys_file),
        "--log-level",
        "debug",
        "--log-format",
        log_format,
        log_path=log,
    )
    for key in (flag_keys, file_key):
        for headers in (
            {"X-API-Key": key},
            {"Authorization": f"apikey {key}"},
            {"Authorization": f"ApiKey {key}"},
        ):
            assert set(_statuses(server, headers)) == {200}, headers
    assert (
        server.http.delete("/api/admin/connections/conn_x", headers={"X-API-Key": flag_keys}).status_code
        == 404
    )

    for headers in (
        {"X-API-Key": wrong},
        {"Authorization": f"apikey {wrong}"},
        {"X-API-Key": ""},
        {"X-API-Key": flag_keys[:-1]},
        {"X-API-Key": wrong, "Authorization": f"Bearer {server.token('admin', admin=True)}"},
    ):
        assert set(_statuses(server, headers)) == {401}, headers

    # An API key is not a user: no socket, no ticket, no thread, no presence of its own.
    for headers in ({"X-API-Key": flag_keys}, {"Authorization": f"apikey {flag_keys}"}):
        assert asyncio.run(_upgrade_status(server, headers)) == 401
        assert server.http.post("/api/tickets", headers=headers).status_code == 401
        assert server.http.post("/api/threads", headers=headers).status_code == 401
        assert server.http.get("/api/presence", headers=headers).status_code == 401
    # A user's admin token still works, and a plain user's does not become admin.
    assert _publish(server, server.auth("admin", admin=True)) == 200
    assert _publish(server, server.auth("plain")) == 403

    # Rotation without a restart: the file's new key works, its old one stops.
    time.sleep(FILE_CHECK_SECONDS)
    keys_file.write_text(f"{next_key}\n")
    eventually(
        lambda: _publish(server, {"X-API-Key": next_key}),
        lambda status: status == 200,
        timeout=5,
        interval=0.2,
    )
    assert _publish(server, {"X-API-Key": file_key}) == 401
    assert _publish(server, {"X-API-Key": flag_keys}) == 200

    # A key misplaced in a query string is not taken, and not logged either.
    assert server.http.post(f"/api/publish?api_key={flag_keys}", json={}).status_code == 401

    async def socket_still_works() -> str:
        socket, welcome = await open_socket(server.ws_url, server.token("user"))
        await socket.close()
        return str(welcome["user_id"])

    assert asyncio.run(socket_still_works()) == "user"
    server.stop()
    text = log.read_text()
    assert "API key refused" in text, "the debug lines are missing: nothing was checked"
    for key in (flag_keys, file_key, next_key, wrong):
        assert key not in text, f"an API key is in the log:\n{text}"


def test_api_keys_from_the_variable(start_server: StartServer) -> None:
    one, two = _key("one"), _key("two")
    server = start_server(env={"WSGUARD_API_KEYS": f"{one}, {two}"})
    assert _publish(server, {"X-API-Key": one}) == 200
    assert _publish(server, {"Authorization": f"apikey {two}"}) == 200
    assert _publish(server, {"X-API-Key": _key("three")}) == 401


def test_a_server_without_api_keys_refuses_any(start_server: StartServer) -> None:
    server = start_server()
    assert set(_statuses(server, {"X-API-Key": _key("any")})) == {401}
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/api/admin/about").status_code == 200


def test_the_redaction_hides_api_keys_in_any_form() -> None:
    key = _key("redact")
    hide([key])
    lines = [
        f"Authorization: apikey {key}",
        f"authorization: APIKEY {key}",
        f"X-API-Key: {key}",
        f"[(b'x-api-key', b'{key}')]",
        f'{{"x-api-key": "{key}"}}',
        f"POST /api/publish?api_key={key}&x=1 HTTP/1.1",
        f"a traceback quoting {key} by itself",
    ]
    for line in lines:
        assert key not in redact(line), line
        assert "[redacted]" in redact(line)
    other = _key("unregistered")
    for line in (f"X-API-Key: {other}", f"Authorization: apikey {other}", f"x-api-key={other}"):
        assert other not in redact(line), line
    assert redact("invalid API key") == "invalid API key"
