"""Server-Sent Events: the same sessions, limits and guarantees as a socket, over ``GET /sse``,
against a real server process with real HTTP clients."""

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wsguard.processes import ServerProcess, StartServer, eventually
from wsguard.processes.clients import Frame, hung_up, open_socket, receive, send
from wsguard.processes.streams import StreamClient
from wsguard.transport.http_guard import EdgeGuard
from wsguard.transport.tcp import RESET_ON_CLOSE


@pytest.fixture(scope="module")
def sse_server() -> Iterator[ServerProcess]:
    flags = ("--connect-rate-per-user", "0", "--max-connections-per-user", "3", "--heartbeat-interval", "1")
    with ServerProcess(*flags) as running:
        yield running


def publish(server: ServerProcess, user_id: str, thread_id: str | None, event: str, **data: object) -> None:
    body = {"user_id": user_id, "thread_id": thread_id, "event": event, "data": data}
    response = server.http.post("/api/publish", json=body, headers=server.auth("publisher", admin=True))
    assert response.status_code == 200, response.text


async def until(stream: StreamClient, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame of ``kind``; fails on any frame of another kind but ``event``."""
    while True:
        frame = await stream.receive(timeout)
        if frame["type"] == kind:
            return frame


def test_a_stream_gets_its_welcome_then_its_events_with_ids(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("ann")
        stream = await StreamClient.open(sse_server.base_url, token, subscribe=["t"])
        try:
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            assert stream.response.headers["x-accel-buffering"] == "no"
            assert stream.response.headers["cache-control"] == "no-cache"
            welcome = stream.welcome
            assert (welcome["user_id"], welcome["transport"]) == ("ann", "sse")
            assert str(welcome["commands"]).startswith("/sse/commands/")
            subscribed = await stream.receive()
            assert (subscribed["type"], subscribed["thread_id"]) == ("subscribed", "t")
            first_id = stream.last_id
            assert first_id
            publish(sse_server, "ann", "t", "agent_started", n=1)
            event = await stream.receive()
            assert (event["type"], event["event"], event["offset"]) == ("event", "agent_started", 1)
            assert stream.last_id not in (None, first_id)
            assert stream.last_id is not None
            assert len(stream.last_id) <= 4096
        finally:
            await stream.close()

    asyncio.run(scenario())


def test_a_reconnect_with_the_last_id_gets_exactly_the_missed_events(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("bea")
        stream = await StreamClient.open(sse_server.base_url, token, subscribe=["t1", "t2"])
        await until(stream, "subscribed")
        await until(stream, "subscribed")
        publish(sse_server, "bea", "t1", "e", n=1)
        publish(sse_server, "bea", "t2", "e", n=1)
        assert (await stream.receive())["offset"] == 1
        assert (await stream.receive())["offset"] == 1
        last_id = stream.last_id
        await stream.close()
        for n in (2, 3, 4):
            publish(sse_server, "bea", "t1", "e", n=n)
        publish(sse_server, "bea", "t2", "e", n=2)

        again = await StreamClient.open(sse_server.base_url, token, last_event_id=last_id)
        try:
            seen: dict[str, list[int]] = {"t1": [], "t2": []}
            recovered: dict[object, object] = {}
            while len(recovered) < 2:
                frame = await again.receive()
                if frame["type"] == "event":
                    seen[str(frame["thread_id"])].append(frame["data"]["n"])
                elif frame["type"] == "subscribed":
                    recovered[frame["thread_id"]] = frame["recovered"]
            assert seen == {"t1": [2, 3, 4], "t2": [2]}
            assert recovered == {"t1": True, "t2": True}
            publish(sse_server, "bea", "t1", "e", n=5)
            live = await again.receive()
            assert (live["thread_id"], live["data"]) == ("t1", {"n": 5})
        finally:
            await again.close()

    asyncio.run(scenario())


def test_a_forged_or_foreign_position_token_reads_nothing(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        owner = await StreamClient.open(sse_server.base_url, sse_server.token("cat"), subscribe=["secret"])
        await until(owner, "subscribed")
        publish(sse_server, "cat", "secret", "e", n=1)
        await until(owner, "event")
        token_of_cat = owner.last_id
        assert token_of_cat
        await owner.close()
        publish(sse_server, "cat", "secret", "e", n=2)
        body, _, mac = token_of_cat.rpartition(".")
        for forged in (token_of_cat, f"{body}.{'0' * len(mac)}", "p1.bm9uc2Vuc2U.abc", "x" * 5000):
            intruder = await StreamClient.open(
                sse_server.base_url, sse_server.token("dan"), subscribe=["secret"], last_event_id=forged
            )
            try:
                subscribed = await intruder.receive()
                assert subscribed["type"] == "subscribed"
                assert (subscribed["recovered"], subscribed["replayed"], subscribed["offset"]) == (
                    False,
                    0,
                    0,
                )
                with pytest.raises(TimeoutError):
                    await intruder.receive(timeout=0.3)
            finally:
                await intruder.close()

    asyncio.run(scenario())


def test_a_fourth_stream_over_a_limit_of_three_ends_the_oldest_with_4001(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("eve")
        streams = [await StreamClient.open(sse_server.base_url, token) for _ in range(3)]
        fourth = await StreamClient.open(sse_server.base_url, token)
        try:
            last = await until(streams[0], "close")
            assert last == {"type": "close", "code": 4001, "reason": "superseded"}
            with pytest.raises(StopAsyncIteration):
                await streams[0].receive()
            for other in (*streams[1:], fourth):
                with pytest.raises(TimeoutError):
                    await until(other, "close", timeout=0.3)
        finally:
            for stream in (*streams, fourth):
                await stream.close()

    asyncio.run(scenario())
    sse_server.wait_idle(timeout=5.0)


def test_a_socket_and_a_stream_share_the_user_limit(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("fay")
        stream = await StreamClient.open(sse_server.base_url, token)
        sockets = [(await open_socket(sse_server.ws_url, token))[0] for _ in range(3)]
        try:
            assert await until(stream, "close") == {"type": "close", "code": 4001, "reason": "superseded"}
        finally:
            await stream.close()
            for sock in sockets:
                await sock.close()

    asyncio.run(scenario())
    sse_server.wait_idle(timeout=5.0)


def forged_path(path: str) -> str:
    """The command path with its mac's first digit changed to one it never is: always another
    mac (setting the last to "0" left one path in sixteen unchanged)."""
    head, _, mac = path.rpartition(".")
    return f"{head}.X{mac[1:]}"


def test_commands_by_post_answer_on_the_stream(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        stream = await StreamClient.open(sse_server.base_url, sse_server.token("gus"))
        try:
            response = await stream.command(type="ping", ref="p1")
            assert response.status_code == 202
            assert await stream.receive() == {"type": "pong", "ref": "p1"}
            response = await stream.command(type="subscribe", thread_id="t", ref=7)
            assert response.status_code == 202
            subscribed = await stream.receive()
            assert (subscribed["type"], subscribed["thread_id"], subscribed["ref"]) == ("subscribed", "t", 7)
            bad = await stream._client.post(stream.welcome["commands"], content=b"{not json")
            assert bad.status_code == 202
            assert (await stream.receive())["code"] == "bad_json"
            forged = forged_path(str(stream.welcome["commands"]))
            assert (await stream._client.post(forged, content=b'{"type":"ping"}')).status_code == 404
            too_big = await stream._client.post(stream.welcome["commands"], content=b" " * 70000)
            assert too_big.status_code == 413
            assert (
                await stream._client.post(stream.welcome["commands"], content=b"\xff\xfe")
            ).status_code == 400
        finally:
            await stream.close()
        path = str(stream.welcome["commands"])
        eventually(
            lambda: sse_server.http.post(path, content=b'{"type":"ping"}').status_code,
            lambda status: status == 404,
            timeout=5.0,
            what="the closed stream's command path refused",
        )

    asyncio.run(scenario())


def test_another_users_command_path_is_refused(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        hal = await StreamClient.open(sse_server.base_url, sse_server.token("hal"))
        ivy = await StreamClient.open(sse_server.base_url, sse_server.token("ivy"))
        try:
            hal_id = str(hal.welcome["connection_id"])
            ivy_path = str(ivy.welcome["commands"])
            hijack = ivy_path.replace(str(ivy.welcome["connection_id"]), hal_id)
            assert (await ivy._client.post(hijack, content=b'{"type":"ping"}')).status_code == 404
            with pytest.raises(TimeoutError):
                await hal.receive(timeout=0.3)
        finally:
            await hal.close()
            await ivy.close()

    asyncio.run(scenario())


RATE = 5
"""Inbound frames per second in the rate-limit test; the burst is twice that."""
BURST = 2 * RATE


async def refused_on_a_socket(server: ServerProcess, token: str) -> Frame:
    """What a socket gets for its first frame over the inbound rate: pings one after another,
    each answered before the next, until one is not answered with a pong."""
    sock, _ = await open_socket(server.ws_url, token)
    try:
        for n in range(100):
            await send(sock, type="ping", ref=n)
            frame = await receive(sock)
            if frame["type"] != "pong":
                return frame
        raise AssertionError("100 pings in a row on a socket, none refused")
    finally:
        await sock.close()


def test_commands_posted_over_the_inbound_rate_are_refused_as_a_socket_s_frames_then_closed_with_1008(
    start_server: StartServer,
) -> None:
    """Commands POSTed one after another, each answered before the next (as fast as the client
    goes): the burst is carried out, then each command over the rate gets the socket's
    ``rate_limited`` frame, and once more were refused in a row than the burst the stream
    closes with 1008 ``policy_violation``, after which its command path is refused."""
    server = start_server("--message-rate-per-connection", str(RATE))

    async def scenario() -> None:
        token = server.token("pia")
        refused = await refused_on_a_socket(server, token)
        assert refused["code"] == "rate_limited", refused
        stream = await StreamClient.open(server.base_url, token)
        try:
            statuses: list[int] = []
            while len(statuses) < 200 and 404 not in statuses:
                statuses.append((await stream.command(type="ping", ref=len(statuses))).status_code)
            assert statuses[-1] == 404, f"{len(statuses)} commands taken, the stream never closed"
            assert set(statuses[:-1]) == {202}, statuses
            frames: list[Frame] = []
            while (frame := await stream.receive())["type"] != "close":
                frames.append(frame)
            with pytest.raises(StopAsyncIteration):
                await stream.receive()
        finally:
            await stream.close()
        assert frame == {"type": "close", "code": 1008, "reason": "policy_violation"}
        assert frames[:BURST] == [{"type": "pong", "ref": n} for n in range(BURST)], frames
        assert frames[-BURST:] == [refused] * BURST, frames
        assert all(f == refused or f == {"type": "pong", "ref": f.get("ref")} for f in frames), frames

    asyncio.run(scenario())
    metrics = server.wait_idle(timeout=5.0)
    assert metrics['wsguard_connections_closed_total{reason="policy_violation"}'] == 1


def test_heartbeat_comments_come_within_the_interval(sse_server: ServerProcess) -> None:
    token = sse_server.token("jon")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{sse_server.base_url}/sse", headers=headers, timeout=5.0) as response:
        started = time.monotonic()
        comments = []
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(time.monotonic() - started)
            if len(comments) == 2:
                break
    assert comments[0] < 1.5, comments
    assert 0.5 < comments[1] - comments[0] < 1.5, comments


def test_fifty_streams_dropped_without_a_goodbye_are_released(start_server: StartServer) -> None:
    server = start_server("--connect-rate-per-user", "0", "--heartbeat-interval", "2")
    request = "GET /sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n"
    sockets = []
    for n in range(50):
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(request.format(server.token(f"drop-{n % 10}")).encode())
        sockets.append(sock)
    for sock in sockets:
        sock.settimeout(5)
        assert b"200 OK" in sock.recv(4096)
    metrics = eventually(
        server.metrics,
        lambda m: m['wsguard_transport_connections{transport="sse"}'] == 50,
        timeout=5.0,
        what="50 streams held",
    )
    assert metrics["wsguard_connections_active"] == 50
    assert metrics["wsguard_http_pending_connections"] <= 1, (
        "a stream still counts as waiting for its request"
    )
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        sock.close()
    dropped = time.monotonic()
    metrics = server.wait_idle(timeout=2.0)
    assert time.monotonic() - dropped < 2.0
    assert metrics['wsguard_transport_connections{transport="sse"}'] == 0
    assert metrics['wsguard_connections_closed_total{reason="connection_lost"}'] == 50
    assert metrics["wsguard_sweeper_repairs_total"] == 0


def test_a_stream_that_stops_reading_is_closed_as_a_slow_consumer(start_server: StartServer) -> None:
    server = start_server("--queue-limit-bytes", "200000", "--write-timeout", "2")
    token = server.token("kim")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    sock.sendall(
        f"GET /sse?subscribe=t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    eventually(
        server.metrics,
        lambda m: m['wsguard_transport_connections{transport="sse"}'] == 1,
        timeout=5.0,
        what="the stream held",
    )
    admin = server.auth("publisher", admin=True)
    blob = "x" * 30000

    def closed_after_a_batch(batch: int) -> bool:
        events = [{"user_id": "kim", "thread_id": "t", "event": "big", "data": {"blob": blob}}] * 30
        assert server.http.post("/api/publish", json={"events": events}, headers=admin).status_code == 200
        return server.metrics()['wsguard_connections_closed_total{reason="slow_consumer"}'] == 1

    assert any(closed_after_a_batch(batch) for batch in range(400)), "never closed as a slow consumer"
    metrics = server.wait_idle(timeout=5.0)
    assert metrics['wsguard_transport_connections{transport="sse"}'] == 0
    sock.close()


SLOW_CONSUMER = 'wsguard_connections_closed_total{reason="slow_consumer"}'
SEND_BUFFER = EdgeGuard.send_buffer_bytes
"""A stream's kernel send buffer (``SO_SNDBUF``), which Linux doubles."""
CLIENT_WINDOW = 64 * 1024
"""The most a client that shrinks its receive buffer after opening can have been promised before:
one loopback segment."""
EVENT_BYTES = 4000


async def stalled_stream(server: ServerProcess, user_id: str) -> tuple[StreamClient, int]:
    """A stream of ``user_id`` on thread ``t`` that read one event of :data:`EVENT_BYTES` and then
    stops reading, with a small receive buffer; and that event's size on the wire."""
    stream = await StreamClient.open(server.base_url, server.token(user_id), subscribe=["t"])
    await until(stream, "subscribed")
    publish(server, user_id, "t", "big", blob="x" * EVENT_BYTES)
    frame = await until(stream, "event")
    data = json.dumps(frame, separators=(",", ":"))
    stream.limit_receive_buffer(4096)
    return stream, len(f"id: {stream.last_id}\ndata: {data}\n\n".encode())


def publish_until_slow_consumer(server: ServerProcess, user_id: str, most: int) -> int:
    """Publish events like the stalled stream's, one at a time, until the server has closed it as
    a slow consumer; how many it took (``most`` + 1 when it was still open after ``most``)."""
    for published in range(1, most + 1):
        publish(server, user_id, "t", "big", blob="x" * EVENT_BYTES)
        if server.metrics().get(SLOW_CONSUMER, 0) == 1:
            return published
    return most + 1


def test_a_stream_that_stops_reading_takes_its_queue_limit_and_a_socket_s_buffers(
    start_server: StartServer,
) -> None:
    queue_limit = 65536
    server = start_server("--queue-limit-bytes", str(queue_limit), "--write-timeout", "30")

    async def scenario() -> None:
        stream, size = await stalled_stream(server, "kai")
        try:
            # What the server counts (its queue and the transport's buffer, up to the limit, and
            # the one event its writer holds), then the kernel's buffers: its send buffer and
            # the client's window.
            bound = queue_limit + size + 2 * SEND_BUFFER + CLIENT_WINDOW
            published = publish_until_slow_consumer(server, "kai", most=bound // size)
            assert published * size <= bound, (
                f"a stream that stopped reading took over {bound} bytes before 4008"
            )
        finally:
            await stream.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def test_a_slow_consumer_stream_is_reset_at_once_without_an_error_logged(
    start_server: StartServer, tmp_path: Path
) -> None:
    close_timeout = 5.0
    log = tmp_path / "server.log"
    flags = ("--queue-limit-bytes", "65536", "--write-timeout", "30", "--close-timeout", str(close_timeout))
    server = start_server(*flags, log_path=log)

    async def scenario() -> None:
        stream, size = await stalled_stream(server, "lou")
        try:
            most = 10_000_000 // size
            assert publish_until_slow_consumer(server, "lou", most) <= most, "never closed as a slow consumer"
            sock = stream.response.extensions["network_stream"].get_extra_info("socket")
            eventually(
                lambda: hung_up(sock),
                lambda gone: gone,
                timeout=close_timeout / 5,
                what="the stream's TCP connection reset after its 4008",
            )
        finally:
            await stream.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)
    assert server.stop() == 0
    output = log.read_text()
    assert "ASGI callable returned without completing response" not in output
    assert "Exception in ASGI application" not in output


def test_a_command_for_a_stream_whose_writer_waits_is_answered_at_once(start_server: StartServer) -> None:
    server = start_server(
        "--queue-limit-bytes", "16777216", "--write-timeout", "30", "--max-message-bytes", "65536"
    )
    admin = server.auth("root", admin=True)

    def publish_one() -> int:
        """Publish an event to the stalled stream; its unsent bytes then."""
        publish(server, "max", "t", "big", blob="x" * 30000)
        view = server.http.get("/api/admin/users/max", headers=admin).json()
        return int(view["connection_list"][0]["unsent_bytes"])

    async def scenario() -> None:
        stream, _ = await stalled_stream(server, "max")
        try:
            eventually(
                publish_one,
                lambda unsent: unsent > 2 * 65536,  # more than the transport holds: its writer waits
                timeout=30.0,
                interval=0,
                what="the stream's writer waiting for its reader",
            )
            pad = "x" * 40000
            commands = [
                {"type": "subscribe", "thread_id": "u", "ref": 1},
                {"type": "ping", "ref": 2},
                {"type": "ping", "ref": 3, "pad": pad},
                {"type": "ping", "ref": 4, "pad": pad},  # past max_message_bytes of waiting commands
            ]
            for command in commands:
                started = time.monotonic()
                async with asyncio.timeout(1.0):
                    response = await stream.command(**command)
                assert response.status_code == 202
                assert time.monotonic() - started < 1.0
            stream.limit_receive_buffer(4 * 1024 * 1024)
            replies: list[tuple[object, object, object]] = []
            while len(replies) < 4:
                frame = await stream.receive(timeout=10.0)
                if frame["type"] != "event":
                    replies.append((frame["type"], frame.get("ref"), frame.get("code")))
            assert replies == [
                ("error", None, "rate_limited"),
                ("subscribed", 1, None),
                ("pong", 2, None),
                ("pong", 3, None),
            ]
        finally:
            await stream.close()

    asyncio.run(scenario())


def test_a_ticket_opens_a_stream_once(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        ticket = sse_server.http.post("/api/tickets", headers=sse_server.auth("lia")).json()["ticket"]
        stream = await StreamClient.open(sse_server.base_url, ticket=ticket)
        assert stream.welcome["user_id"] == "lia"
        await stream.close()
        with pytest.raises(AssertionError, match="401"):
            await StreamClient.open(sse_server.base_url, ticket=ticket)
        with pytest.raises(AssertionError, match="401"):
            await StreamClient.open(sse_server.base_url)

    asyncio.run(scenario())


def test_the_admin_view_shows_the_transport(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("max")
        stream = await StreamClient.open(sse_server.base_url, token)
        sock, _ = await open_socket(sse_server.ws_url, token)
        try:
            view = sse_server.http.get(
                "/api/admin/users/max", headers=sse_server.auth("root", admin=True)
            ).json()
            transports = sorted(c["transport"] for c in view["connection_list"])
            assert transports == ["sse", "websocket"]
        finally:
            await stream.close()
            await sock.close()

    asyncio.run(scenario())


def test_drain_ends_every_stream_with_1001(start_server: StartServer) -> None:
    server = start_server("--connect-rate-per-user", "0")

    async def scenario() -> None:
        streams = [await StreamClient.open(server.base_url, server.token(f"dr-{n}")) for n in range(5)]
        assert server.process is not None
        server.process.terminate()
        for stream in streams:
            assert await until(stream, "close") == {"type": "close", "code": 1001, "reason": "going_away"}
            await stream.close()

    asyncio.run(scenario())
    assert server.wait(timeout=20) == 0


def test_the_stream_and_the_socket_get_the_same_frames(sse_server: ServerProcess) -> None:
    async def scenario() -> None:
        token = sse_server.token("ned")
        stream = await StreamClient.open(sse_server.base_url, token, subscribe=["same"])
        sock, _ = await open_socket(sse_server.ws_url, token)
        try:
            await sock.send(json.dumps({"type": "subscribe", "thread_id": "same"}))
            await receive(sock)
            await until(stream, "subscribed")
            publish(sse_server, "ned", "same", "tool_executing", tool="search")
            assert await stream.receive() == await receive(sock)
        finally:
            await stream.close()
            await sock.close()

    asyncio.run(scenario())
