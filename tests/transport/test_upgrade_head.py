"""What the app is given of an upgrade's head: the same whether wsguard's HTTP protocol (on h11
or on httptools) hands the head over parsed, or uvicorn's own h11 protocol hands it over as
bytes for the ``websockets`` parser to read again, over raw sockets against each."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.transport.edge_support import exchange, guarded_server_on_stock_http
from wsguard.processes import ServerProcess

HEAD = (
    b"GET /scope/caf%C3%A9%20x?token=a%2Fb&x=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket \t\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"X-Mixed-CASE:   padded value  \r\n"
    b"X-Dup: 1\r\n"
    b"X-Dup: 2\r\n"
    b"X-Latin: caf\xe9\r\n"
    b"Sec-WebSocket-Protocol: one, two\r\n"
    b"Sec-WebSocket-Protocol: three\r\n"
    b"\r\n"
)


def _head_seen_by_the_app(server: ServerProcess) -> tuple[bytes, dict[str, Any]]:
    """The response head, and the JSON of the first frame after it (the app then closes)."""
    answer = exchange(server.port, HEAD, timeout=5.0)
    assert answer.closed, answer
    response, _, frames = answer.data.partition(b"\r\n\r\n")
    assert len(frames) >= 4, answer
    assert frames[0] == 0x81, answer
    start = 2 if frames[1] < 126 else 4
    return response, json.loads(frames[start : _frame_end(frames)])


def _frame_end(frame: bytes) -> int:
    length = frame[1] & 0x7F
    return 2 + length if length < 126 else 4 + int.from_bytes(frame[2:4], "big")


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_app_is_given_the_same_head_whichever_parser_read_it(parser: str) -> None:
    with guarded_server_on_stock_http() as stock:
        stock_response, reparsed = _head_seen_by_the_app(stock)
    with guarded_server_on_stock_http("--guarded-http", "--http", parser) as guarded:
        guarded_response, handed_over = _head_seen_by_the_app(guarded)

    assert handed_over == reparsed
    for response in (stock_response, guarded_response):
        assert response.startswith(b"HTTP/1.1 101 "), response
    assert b"sec-websocket-protocol: one" in guarded_response.lower().split(b"\r\n"), guarded_response
    assert handed_over["path"] == "/scope/café x"
    assert handed_over["raw_path"] == "/scope/caf%C3%A9%20x"
    assert handed_over["query_string"] == "token=a%2Fb&x=1"
    assert handed_over["subprotocols"] == ["one", "two", "three"]
    assert handed_over["http_version"] == "1.1"
    assert handed_over["headers"] == [
        ["host", "127.0.0.1"],
        ["connection", "keep-alive, Upgrade"],
        ["upgrade", "websocket"],
        ["sec-websocket-version", "13"],
        ["sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="],
        ["x-mixed-case", "padded value"],
        ["x-dup", "1"],
        ["x-dup", "2"],
        ["x-latin", "café"],
        ["sec-websocket-protocol", "one, two"],
        ["sec-websocket-protocol", "three"],
    ]
