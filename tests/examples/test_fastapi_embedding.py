"""The FastAPI embedding example, served for real: its auth, its subscription rule, its command,
and its in-process publish from an HTTP route."""

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsguard.processes import ServerProcess
from wsguard.processes.clients import Frame, receive, send

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


@pytest.fixture(scope="module")
def app() -> Iterator[ServerProcess]:
    with ServerProcess(command=[sys.executable, str(EXAMPLE)]) as server:
        yield server


def test_the_apps_own_auth_decides_who_connects(app: ServerProcess) -> None:
    async def refused() -> int:
        with pytest.raises(InvalidStatus) as error:
            await connect(app.ws_url, additional_headers={"X-API-Key": "stolen"})
        return error.value.response.status_code

    assert asyncio.run(refused()) == 401


def test_subscription_rule_custom_command_and_in_process_publish(app: ServerProcess) -> None:
    async def scenario() -> tuple[list[Frame], Frame, Frame, Frame]:
        socket = await connect(app.ws_url, additional_headers={"X-API-Key": "key-alice"})
        welcome = await receive(socket)
        await send(socket, type="subscribe", thread_id="secret-plans", ref=1)
        refused = await receive(socket)
        await send(socket, type="typing", thread_id="project-x", ref=2)
        typing = await receive(socket)
        await send(socket, type="subscribe", thread_id="project-x", ref=3)
        assert (await receive(socket))["type"] == "subscribed"
        response = app.http.post("/projects/x/deploy", headers={"X-API-Key": "key-alice"})
        assert response.json()["offsets"] == [1, 2, 3]
        events = [await receive(socket) for _ in range(3)]
        await socket.close()
        return events, welcome, refused, typing

    events, welcome, refused, typing = asyncio.run(scenario())
    assert welcome["user_id"] == "alice"
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "unauthorized", 1)
    assert typing == {"type": "typing_ack", "user_id": "alice", "thread_id": "project-x", "ref": 2}
    assert [e["data"]["step"] for e in events] == ["queued", "building", "live"]
    assert {e["thread_id"] for e in events} == {"project-x"}
    app.wait_idle(timeout=5.0)


def test_other_users_never_see_the_apps_events(app: ServerProcess) -> None:
    async def scenario() -> Frame:
        bob = await connect(app.ws_url, additional_headers={"X-API-Key": "key-bob"})
        await receive(bob)
        await send(bob, type="subscribe", thread_id="project-x")
        await receive(bob)
        app.http.post("/projects/x/deploy", headers={"X-API-Key": "key-alice"})
        await send(bob, type="ping", ref="after")
        frame = await receive(bob)
        await bob.close()
        return frame

    assert asyncio.run(scenario()) == {"type": "pong", "ref": "after"}


def test_the_browser_client_answers_cors_by_the_guards_origin_rule(app: ServerProcess) -> None:
    """Embedded as standalone: the guard's own origin rule decides who may import the client."""
    own = app.http.get("/client/wsguard.js", headers={"Origin": app.base_url})
    assert own.headers.get("access-control-allow-origin") == app.base_url
    other = app.http.get("/client/wsguard.js", headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
