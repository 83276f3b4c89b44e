"""The HTTP side of the socket, from outside: bad, oversized, unfinished and idle request heads,
and one address holding many of them, against a real ``wsguard serve`` over raw sockets."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from tests.transport.edge_support import (
    UNFINISHED_HEAD,
    UPGRADE,
    back_to,
    close_all,
    connect_as,
    descriptors,
    edge_server,
    exchange,
    guarded_server_on_stock_http,
    held_from,
    open_heads,
    read_until_closed,
    serve_command,
    stream_a_run,
)
from wsguard.processes import ServerProcess, eventually
from wsguard.processes.metrics import parse_metrics
from wsguard.transport.http_limits import MAX_HEAD_BYTES

REFUSED = 'wsguard_http_refused_total{{reason="{}"}}'
FLOODER = "127.0.0.4"
"""An address that is not a trusted proxy (the tests' own HTTP client uses 127.0.0.1)."""

BAD_HEADS = {
    "9 KiB header line": (UPGRADE + b"X-Big: " + b"a" * 9216 + b"\r\n\r\n", 431, "line_too_long"),
    "100 KiB head": (
        UPGRADE + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 5000) for i in range(20)) + b"\r\n",
        431,
        "head_too_large",
    ),
    "an unfinished 40 KiB head": (
        UPGRADE + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"c" * 4000) for i in range(10)),
        431,
        "head_too_large",
    ),
    "garbage bytes": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request"),
    "HTTP/1.0 upgrade": (UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n", 400, "bad_request"),
    "an upgrade with a body": (UPGRADE + b"Content-Length: 5\r\n\r\nhello", 400, None),
    "an upgrade with a transfer coding": (
        UPGRADE + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        None,
    ),
    "no Sec-WebSocket-Key": (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        400,
        None,
    ),
}


PARSERS = ["h11", "httptools"]
"""Each parser's protocol has its own hooks for the limits (``--http``)."""


@pytest.fixture(scope="module", params=PARSERS)
def plain_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Default flags but the parser: the bad-head tests run against any build."""
    with edge_server("--http", request.param) as started:
        yield started


@pytest.fixture(scope="module", params=PARSERS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    flags = ("--http", request.param, "--header-timeout", "2", "--keep-alive-timeout", "1")
    with edge_server(*flags) as started:
        yield started


def _metrics(server: ServerProcess) -> dict[str, float]:
    """A scrape on a connection of its own, closed after it (so that it never idles)."""
    response = server.http.get("/metrics", headers={"Connection": "close"})
    return parse_metrics(response.text)


def _refused(server: ServerProcess, reason: str) -> float:
    return _metrics(server).get(REFUSED.format(reason), 0.0)


@pytest.mark.parametrize("case", list(BAD_HEADS))
def test_a_bad_head_gets_a_4xx_within_1s_and_the_descriptor_back(
    plain_server: ServerProcess, case: str
) -> None:
    server = plain_server
    request, status, reason = BAD_HEADS[case]
    assert (len(request) < MAX_HEAD_BYTES) == (reason != "head_too_large"), case
    before = _refused(server, reason) if reason else 0.0
    baseline = descriptors(server)
    answer = exchange(server.port, request, timeout=1.0)
    assert answer.status == status, f"{case}: {answer}"
    assert answer.closed, f"{case}: the server kept the connection open for {answer.seconds:.2f}s"
    back_to(server, baseline, timeout=2.0)
    if reason:
        assert _refused(server, reason) == before + 1


def _quiet(server: ServerProcess) -> None:
    """Wait until no HTTP connection is open but the scrape's own (earlier ones time out)."""
    eventually(
        lambda: _metrics(server)["wsguard_http_pending_connections"],
        lambda pending: pending == 1,
        timeout=5.0,
        what="no HTTP connection but the scrape's own",
    )


def test_unfinished_heads_are_closed_within_the_header_timeout(server: ServerProcess) -> None:
    _quiet(server)
    baseline = descriptors(server)
    before = _refused(server, "header_timeout")
    opened: list[tuple[float, socket.socket]] = []
    try:
        for _ in range(200):
            started = time.monotonic()
            opened.extend((started, sock) for sock in open_heads(server.port, 1))
        sockets = [sock for _, sock in opened]
        eventually(
            lambda: held_from(server, sockets),
            lambda count: count == 200,
            timeout=2.0,
            what="the server to hold the 200 connections",
        )
        answers = [read_until_closed(sock, started, 2.0 + 1.0 + 1.0) for started, sock in opened]
    finally:
        close_all([sock for _, sock in opened])
    late = [answer for answer in answers if not answer.closed or answer.seconds > 2.0 + 1.0]
    assert not late, f"{len(late)} of 200 not closed within the header timeout + 1 s: {late[:3]}"
    assert min(answer.seconds for answer in answers) >= 1.9, "closed before the header timeout"
    assert all(answer.status == 408 for answer in answers)
    back_to(server, baseline, timeout=2.0)
    assert _refused(server, "header_timeout") == before + 200


def test_a_head_sent_a_byte_at_a_time_is_still_cut_at_the_header_timeout(server: ServerProcess) -> None:
    received = b""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        for byte in UPGRADE:
            try:
                sock.send(bytes([byte]))
                chunk = sock.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            received += chunk
        held = time.monotonic() - started
    assert held < 2.0 + 1.0, f"a dribbled head held the connection for {held:.1f}s"
    assert received.startswith(b"HTTP/1.1 408 "), received


def test_an_idle_keep_alive_connection_is_closed_and_counted(server: ServerProcess) -> None:
    _quiet(server)
    before = _refused(server, "idle_timeout")
    answer = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3.0)
    assert answer.status == 200
    assert answer.closed, answer
    assert 0.9 <= answer.seconds <= 2.0, answer
    assert _refused(server, "idle_timeout") == before + 1


def test_an_oversized_head_after_a_kept_alive_request_gets_431_at_once(plain_server: ServerProcess) -> None:
    """The head's bound holds for every request of a connection, not only its first."""
    server = plain_server
    before = _refused(server, "head_too_large")
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    unfinished = b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"d" * 4000) for i in range(10)
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(first)
        sock.settimeout(2.0)
        response = b""
        while not response.endswith(b"\r\n\r\nok"):
            chunk = sock.recv(4096)
            assert chunk, f"closed after {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 200 "), response
        started = time.monotonic()
        sock.sendall(unfinished)
        answer = read_until_closed(sock, started, timeout=1.0)
    assert answer.status == 431, answer
    assert answer.closed, answer
    assert _refused(server, "head_too_large") == before + 1


def test_past_the_per_address_cap_a_new_connection_is_closed_at_once() -> None:
    flags = ("--max-pending-per-address", "10", "--forwarded-allow-ips", "127.0.0.3")
    with edge_server(*flags) as server:
        token = server.token("carol")
        heads = open_heads(server.port, 10, source=FLOODER)
        try:
            eventually(
                lambda: held_from(server, heads),
                lambda count: count == 10,
                timeout=5.0,
                what="10 pending connections from the flooding address",
            )
            answer = exchange(server.port, UNFINISHED_HEAD, timeout=1.0, source=FLOODER)
            assert answer.closed, answer
            assert answer.data == b"", answer

            async def other_address() -> list[str]:
                client = await connect_as(server, "carol", source="127.0.0.2", token=token)
                try:
                    return await stream_a_run(client)
                finally:
                    await client.close()

            assert asyncio.run(other_address())[-1] == "agent_completed"
        finally:
            close_all(heads)
        assert server.metrics()[REFUSED.format("pending_per_address")] >= 1


def test_an_address_in_forwarded_allow_ips_is_not_capped_but_still_timed_out() -> None:
    flags = ("--max-pending-per-address", "10", "--header-timeout", "2")
    with edge_server(*flags) as server:
        sent_at = time.monotonic()
        heads = open_heads(server.port, 40)
        try:
            eventually(
                lambda: held_from(server, heads),
                lambda count: count == 40,
                timeout=2.0,
                what="all 40 connections from the load balancer held",
            )
            answers = [read_until_closed(sock, sent_at, 4.0) for sock in heads]
        finally:
            close_all(heads)
        assert all(answer.closed and 1.9 <= answer.seconds <= 3.5 for answer in answers), answers[:3]
        metrics = server.metrics()
        assert metrics[REFUSED.format("pending_per_address")] == 0
        assert metrics[REFUSED.format("header_timeout")] == 40


def test_new_flags_are_validated() -> None:
    for args, named in (
        (["--header-timeout", "0"], "--header-timeout"),
        (["--keep-alive-timeout", "soon"], "--keep-alive-timeout"),
        (["--max-pending-per-address", "-1"], "--max-pending-per-address"),
        (["--ssl-keyfile", "/nonexistent.key"], "--ssl-keyfile"),
        (["--ssl-certfile", "/nonexistent.pem"], "--ssl-certfile"),
    ):
        command = [*serve_command(), "--dev", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1, (args, result.stderr)
        assert named in lines[0], (args, result.stderr)


def test_the_websocket_protocol_class_answers_a_head_its_parser_refuses() -> None:
    """On uvicorn's own HTTP protocol (no head limits) a 9 KiB header line reaches the
    WebSocket protocol class, whose parser refuses it: it must answer and close. websockets
    names the limit from version 17 on (431); before, the class answers 400 itself."""
    expected = 431 if int(version("websockets").split(".")[0]) >= 17 else 400
    with guarded_server_on_stock_http() as server:
        baseline = descriptors(server)
        answer = exchange(server.port, BAD_HEADS["9 KiB header line"][0], timeout=1.0)
        assert answer.status == expected, answer
        assert answer.closed, answer
        back_to(server, baseline, timeout=2.0)
