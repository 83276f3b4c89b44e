"""On the memory backend, over real sockets: ``GET /api/threads/{thread_id}/events`` (the owner's
events after ``since``, nothing of them to anyone else, a page that draws then subscribes
without a gap), ``idempotency_key`` and batches on ``POST /api/publish``, and
``wsguard.publisher`` over HTTP with an API key or an admin token."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wsguard.client import HistoryRefused, connect, fetch_history
from wsguard.processes import ServerProcess
from wsguard.processes.clients import open_socket, receive, send
from wsguard.publisher import (
    AsyncPublisher,
    BrokerUnavailable,
    EventTooLarge,
    InvalidEvent,
    Publisher,
    PublishItem,
    PublishRefused,
)

KEY = f"worker-{secrets.token_urlsafe(24)}"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--connect-rate-per-user", "0", "--api-key", KEY) as running:
        yield running


def _publish(server: ServerProcess, body: dict[str, Any]) -> Any:
    return server.http.post("/api/publish", json=body, headers={"X-API-Key": KEY})


def _events(server: ServerProcess, path: str, headers: dict[str, str]) -> Any:
    return server.http.get(path, headers=headers)


def test_history_after_since_goes_to_the_owner_and_nothing_of_it_to_another_user(
    server: ServerProcess,
) -> None:
    for n in range(1, 6):
        body = {"user_id": "hist-owner", "thread_id": "t", "event": "step", "data": {"n": n}}
        assert _publish(server, body).json() == {"offset": n}
    owner = _events(server, "/api/threads/t/events?since=2", server.auth("hist-owner"))
    assert owner.status_code == 200
    assert owner.headers["content-type"] == "application/json"
    body = owner.json()
    assert [(e["type"], e["offset"], e["data"]["n"]) for e in body["events"]] == [
        ("event", 3, 3),
        ("event", 4, 4),
        ("event", 5, 5),
    ]
    assert (body["thread_id"], body["offset"], body["complete"]) == ("t", 5, True)
    assert {e["epoch"] for e in body["events"]} == {body["epoch"]}

    other = _events(server, "/api/threads/t/events?since=2", server.auth("hist-other"))
    assert other.status_code == 200
    assert (other.json()["events"], other.json()["offset"]) == ([], 0)
    assert '"n"' not in other.text
    forbidden = _events(server, "/api/threads/t/events?user_id=hist-owner", server.auth("hist-other"))
    assert forbidden.status_code == 403
    assert "step" not in forbidden.text

    admin = _events(server, "/api/threads/t/events?user_id=hist-owner&limit=2", server.auth("op", admin=True))
    assert [e["offset"] for e in admin.json()["events"]] == [1, 2]
    by_key = _events(server, "/api/threads/t/events?user_id=hist-owner&since=4", {"X-API-Key": KEY})
    assert [e["offset"] for e in by_key.json()["events"]] == [5]
    assert _events(server, "/api/threads/t/events", {"X-API-Key": KEY}).status_code == 400
    assert server.http.get("/api/threads/t/events").status_code == 401
    assert server.http.post("/api/threads/t/events", headers=server.auth("hist-owner")).status_code == 405
    for query in ("since=-1", "since=x", "limit=0", "limit=1001"):
        assert _events(server, f"/api/threads/t/events?{query}", server.auth("hist-owner")).status_code == 400
    assert _events(server, "/api/threads/bad%20id/events", server.auth("hist-owner")).status_code == 400
    past = _events(server, "/api/threads/t/events?since=9", server.auth("hist-owner")).json()
    assert (past["events"], past["complete"]) == ([], False)


def test_a_page_on_another_allowed_origin_may_read_history(server: ServerProcess) -> None:
    origin = {"Origin": "https://app.example"}
    preflight = server.http.options(
        "/api/threads/t/events",
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://app.example")  # --dev: any
    assert "GET" in preflight.headers["access-control-allow-methods"]
    answer = _events(server, "/api/threads/t/events", {**origin, **server.auth("cors-user")})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] in ("*", "https://app.example")  # --dev: any


def test_a_page_draws_the_history_then_subscribes_from_its_position_without_a_gap(
    server: ServerProcess,
) -> None:
    async def scenario() -> None:
        for n in range(1, 8):
            _publish(server, {"user_id": "drawer", "thread_id": "t", "event": "step", "data": {"n": n}})
        async with connect(server.ws_url, token=server.token("drawer")) as client:
            history = await client.history("t", since=2, limit=3)
            assert [e.offset for e in history.events] == [3, 4, 5]
            assert history.complete
            await client.subscribe("t", since=history.position)
            _publish(server, {"user_id": "drawer", "thread_id": "t", "event": "step", "data": {"n": 8}})
            rest = [await asyncio.wait_for(anext(client), 5) for _ in range(3)]
            assert [getattr(e, "offset", None) for e in rest] == [6, 7, 8]
            assert client.duplicates_dropped == 0
        with pytest.raises(HistoryRefused) as refused:
            await fetch_history(server.base_url, "t", token="not-a-jwt")
        assert refused.value.status == 401

    asyncio.run(scenario())


def test_an_idempotency_key_publishes_once_for_its_user_and_thread(server: ServerProcess) -> None:
    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("idem"))
        await send(socket, type="subscribe", thread_id="t")
        assert (await receive(socket))["type"] == "subscribed"
        body = {"user_id": "idem", "thread_id": "t", "event": "step", "idempotency_key": "run:1"}
        assert [_publish(server, body).json()["offset"] for _ in range(3)] == [1, 1, 1]
        assert _publish(server, {**body, "thread_id": "u"}).json() == {"offset": 1}
        assert _publish(server, {**body, "user_id": "idem-2"}).json() == {"offset": 1}
        assert _publish(server, {**body, "idempotency_key": "run:2"}).json() == {"offset": 2}
        assert _publish(server, {**body, "thread_id": None}).json() == {"offset": None}
        assert _publish(server, {**body, "thread_id": None}).json() == {"offset": None}
        frames = [await receive(socket) for _ in range(3)]
        assert [(f["offset"], f["thread_id"]) for f in frames] == [(1, "t"), (2, "t"), (None, None)]
        with pytest.raises(TimeoutError):
            await receive(socket, timeout=0.3)
        await socket.close()

    asyncio.run(scenario())
    assert (
        _publish(server, {"user_id": "u", "thread_id": "t", "event": "e", "idempotency_key": ""}).status_code
        == 400
    )


def test_a_batch_is_checked_whole_then_published_in_order(server: ServerProcess) -> None:
    events = [{"user_id": "batcher", "thread_id": "t", "event": "delta", "data": {"n": n}} for n in range(5)]
    assert _publish(server, {"events": events}).json() == {"offsets": [1, 2, 3, 4, 5]}
    too_large = [*events, {**events[0], "data": {"x": "y" * 70_000}}]
    assert _publish(server, {"events": too_large}).status_code == 413
    malformed = [*events, {"user_id": "batcher"}]
    assert _publish(server, {"events": malformed}).status_code == 400
    history = _events(server, "/api/threads/t/events?user_id=batcher", {"X-API-Key": KEY}).json()
    assert history["offset"] == 5


def test_the_http_publisher_with_an_api_key_or_an_admin_token(server: ServerProcess) -> None:
    with Publisher.from_url(server.base_url, api_key=KEY) as publisher:
        assert publisher.publish("http-pub", "r", "step", {"n": 1}, run_id="run_1", request_id="req_1") == 1
        assert publisher.publish("http-pub", "t", "step", {"n": 1}) == 1
        assert publisher.publish("http-pub", "t", "step", {"n": 1}, idempotency_key="k") == 2
        assert publisher.publish("http-pub", "t", "step", {"n": 1}, idempotency_key="k") == 2
        assert publisher.publish("http-pub", None, "note") is None
        items = [PublishItem("http-pub", "t", "delta", {"n": n}) for n in range(1500)]
        assert publisher.publish_many(items) == list(range(3, 1503))
        with pytest.raises(EventTooLarge):
            publisher.publish("http-pub", "t", "step", {"x": "y" * 70_000})
        with pytest.raises(InvalidEvent):
            publisher.publish("http-pub", "bad thread", "step")
    [run] = _events(server, "/api/threads/r/events?user_id=http-pub", {"X-API-Key": KEY}).json()["events"]
    assert (run["run_id"], run["request_id"]) == ("run_1", "req_1")
    kept = _events(server, "/api/threads/t/events?user_id=http-pub", {"X-API-Key": KEY}).json()
    assert (kept["offset"], kept["complete"], len(kept["events"])) == (1502, False, 100)

    async def asynchronously() -> None:
        token = server.token("op", admin=True)
        async with AsyncPublisher.from_url(server.base_url, token=token) as publisher:
            assert await publisher.publish("http-pub", "t", "step") == 1503
            assert await publisher.publish_many([PublishItem("http-pub", "t", "d")] * 2) == [1504, 1505]
        async with AsyncPublisher.from_url(server.base_url, token=server.token("plain")) as publisher:
            with pytest.raises(PublishRefused) as refused:
                await publisher.publish("http-pub", "t", "step")
            assert refused.value.status == 403

    asyncio.run(asynchronously())
    with pytest.raises(ValueError, match="exactly one"):
        Publisher.from_url(server.base_url)
    with pytest.raises(ValueError, match="redis://"):
        Publisher.from_url("ftp://nowhere")


def test_the_http_publisher_raises_when_the_server_is_gone() -> None:
    gone = ServerProcess("--api-key", KEY).start()
    url = gone.base_url
    with Publisher.from_url(url, api_key=KEY, timeout=1.0) as publisher:
        assert publisher.publish("u", "t", "e") == 1
        gone.stop()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            publisher.publish("u", "t", "e")
        assert time.monotonic() - started < 10
