"""The wire protocol over real sockets: auth refusals, bad frames, isolation, delivery, runs."""

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive, send


async def _refused_status(url: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, additional_headers=headers, open_timeout=5)
    return refused.value.response.status_code


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["missing", "garbage", "wrong-scheme"],
)
def test_bad_credentials_get_401_before_the_upgrade(server: ServerProcess, headers: dict[str, str]) -> None:
    assert asyncio.run(_refused_status(server.ws_url, headers)) == 401


def test_badly_signed_and_expired_tokens_get_401(server: ServerProcess) -> None:
    import jwt

    forged = jwt.encode(
        {"sub": "alice", "exp": 4_000_000_000},
        "a-wrong-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    expired = server.token("alice", ttl=-120)
    for token in (forged, expired):
        status = asyncio.run(_refused_status(server.ws_url, {"Authorization": f"Bearer {token}"}))
        assert status == 401
    assert server.metrics()["wsguard_connections_opened_total"] == 0


def test_malformed_frames_get_errors_and_the_connection_lives(server: ServerProcess) -> None:
    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("sloppy"))
        cases = [
            ("{not json", "bad_json"),
            ('"just a string"', "bad_request"),
            ('{"type": "subscribe", "thread_id": "bad id!", "ref": "r"}', "bad_request"),
            ('{"type": "dance"}', "unknown_type"),
        ]
        for text, code in cases:
            await socket.send(text)
            frame = await receive(socket)
            assert frame["type"] == "error"
            assert frame["code"] == code
        await send(socket, type="ping", ref=42)
        assert await receive(socket) == {"type": "pong", "ref": 42}
        await socket.close()

    asyncio.run(scenario())


def test_same_thread_id_for_two_users_never_crosses(server: ServerProcess) -> None:
    async def scenario() -> None:
        alice, _ = await open_socket(server.ws_url, server.token("alice"))
        bob, _ = await open_socket(server.ws_url, server.token("bob"))
        for socket in (alice, bob):
            await send(socket, type="subscribe", thread_id="shared")
            assert (await receive(socket))["type"] == "subscribed"
        admin = server.auth("ops", admin=True)
        for n in range(5):
            for user in ("alice", "bob"):
                body = {"user_id": user, "thread_id": "shared", "event": "e", "data": {"n": n, "for": user}}
                assert server.http.post("/api/publish", json=body, headers=admin).status_code == 200
        for socket, user in ((alice, "alice"), (bob, "bob")):
            frames = [await receive(socket) for _ in range(5)]
            assert [f["data"] for f in frames] == [{"n": n, "for": user} for n in range(5)]
            assert [f["offset"] for f in frames] == [1, 2, 3, 4, 5]
        await send(alice, type="ping")
        assert (await receive(alice))["type"] == "pong", "alice got an extra frame"
        await send(bob, type="ping")
        assert (await receive(bob))["type"] == "pong", "bob got an extra frame"
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_run_ids_returned_over_http_are_on_every_event(server: ServerProcess) -> None:
    async def scenario() -> None:
        tabs = [(await open_socket(server.ws_url, server.token("runner")))[0] for _ in range(3)]
        for tab in tabs:
            await send(tab, type="subscribe", thread_id="chat-1")
            await receive(tab)
        response = server.http.post(
            "/api/threads/chat-1/runs", json={"text": "hello"}, headers=server.auth("runner")
        )
        ids = response.json()
        per_tab = []
        for tab in tabs:
            events: list[dict[str, Any]] = []
            while not events or events[-1]["event"] != "agent_completed":
                events.append(await receive(tab))
            per_tab.append(events)
        assert per_tab[0] == per_tab[1] == per_tab[2], "every tab gets every event once"
        names = [e["event"] for e in per_tab[0]]
        assert names[0] == "agent_started"
        assert names[-1] == "agent_completed"
        assert "tool_executing" in names
        assert {(e["thread_id"], e["run_id"], e["request_id"]) for e in per_tab[0]} == {
            (ids["thread_id"], ids["run_id"], ids["request_id"])
        }
        offsets = [e["offset"] for e in per_tab[0]]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
        for tab in tabs:
            await tab.close()

    asyncio.run(scenario())


def test_user_level_events_reach_every_connection_of_that_user_only(server: ServerProcess) -> None:
    async def scenario() -> None:
        mine = [(await open_socket(server.ws_url, server.token("carol")))[0] for _ in range(2)]
        other, _ = await open_socket(server.ws_url, server.token("dave"))
        delivered = server.metrics()["wsguard_events_delivered_total"]
        body = {"user_id": "carol", "thread_id": None, "event": "notice", "data": {"x": 1}}
        response = server.http.post("/api/publish", json=body, headers=server.auth("ops", admin=True))
        assert response.json() == {"offset": None}
        for socket in mine:
            frame = await receive(socket)
            assert (frame["event"], frame["thread_id"], frame["offset"]) == ("notice", None, None)
        assert server.metrics()["wsguard_events_delivered_total"] == delivered + len(mine)
        await send(other, type="ping")
        assert (await receive(other))["type"] == "pong"
        for socket in [*mine, other]:
            await socket.close()

    asyncio.run(scenario())


def test_publish_needs_admin_and_refuses_oversized_events(server: ServerProcess) -> None:
    body = {"user_id": "u", "thread_id": "t", "event": "e", "data": {"x": "y" * 70_000}}
    assert server.http.post("/api/publish", json=body, headers=server.auth("u")).status_code == 403
    admin = server.auth("ops", admin=True)
    assert server.http.post("/api/publish", json=body, headers=admin).status_code == 413
    body["data"] = []
    assert server.http.post("/api/publish", json=body, headers=admin).status_code == 400


def test_http_endpoints(server: ServerProcess) -> None:
    assert server.http.get("/healthz").status_code == 200
    assert server.http.get("/readyz").status_code == 200
    minted = server.http.post("/api/threads", headers=server.auth("u")).json()["thread_id"]
    assert minted.startswith("thr_")
    assert server.http.post("/api/threads").status_code == 401
    text = server.http.get("/metrics").text
    for series in ("wsguard_cleanup_seconds_bucket", "process_open_fds", "wsguard_backend_up 1.0"):
        assert series in text


def test_a_second_subscribe_never_resends(server: ServerProcess) -> None:
    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("twice"))
        admin = server.auth("ops", admin=True)
        await send(socket, type="subscribe", thread_id="t")
        first = await receive(socket)
        for n in range(3):
            body = {"user_id": "twice", "thread_id": "t", "event": "e", "data": {"n": n}}
            server.http.post("/api/publish", json=body, headers=admin)
        got = [await receive(socket) for _ in range(3)]
        since = {"epoch": first["epoch"], "offset": 0}
        await send(socket, type="subscribe", thread_id="t", since=since, ref="again")
        again = await receive(socket)
        assert again["type"] == "subscribed"
        assert again["replayed"] == 0
        assert again["recovered"] is True
        assert [g["offset"] for g in got] == [1, 2, 3]
        await socket.close()

    asyncio.run(scenario())
