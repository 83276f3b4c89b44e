"""The head limits as plain decisions: where each boundary lies, and which status it gets."""

from __future__ import annotations

from wsguard.transport.http_limits import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    check_head,
    refusal_response,
)

UPGRADE_HEADERS = [(b"host", b"x"), (b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"websocket")]


def _header_of_line_length(length: int) -> tuple[bytes, bytes]:
    return b"x-pad", b"v" * (length - len(b"x-pad: \r\n"))


def test_a_header_line_of_exactly_the_limit_passes_and_one_byte_more_gets_431() -> None:
    at_limit = [*UPGRADE_HEADERS, _header_of_line_length(MAX_LINE_BYTES)]
    assert check_head(b"GET", b"/ws", b"1.1", at_limit) is None
    over = [*UPGRADE_HEADERS, _header_of_line_length(MAX_LINE_BYTES + 1)]
    refusal = check_head(b"GET", b"/ws", b"1.1", over)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (431, "line_too_long")


def test_a_long_request_line_gets_414() -> None:
    refusal = check_head(b"GET", b"/" + b"a" * MAX_LINE_BYTES, b"1.1", UPGRADE_HEADERS)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (414, "line_too_long")


def test_many_short_lines_over_the_head_limit_get_431() -> None:
    line = 1000
    count = MAX_HEAD_BYTES // line + 1
    assert count <= MAX_HEADERS
    headers = [_header_of_line_length(line) for _ in range(count)]
    refusal = check_head(b"GET", b"/", b"1.1", headers)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (431, "head_too_large")
    too_many = [(b"x", b"y")] * (MAX_HEADERS + 1)
    refusal = check_head(b"GET", b"/", b"1.1", too_many)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (431, "too_many_headers")


def test_only_an_upgrade_must_be_http_1_1() -> None:
    refusal = check_head(b"GET", b"/ws", b"1.0", UPGRADE_HEADERS)
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (400, "bad_request")
    assert check_head(b"GET", b"/healthz", b"1.0", [(b"host", b"x")]) is None


def test_a_refusal_response_is_complete_and_closes() -> None:
    response = refusal_response(431, "too large")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in head
    assert f"content-length: {len(body)}".encode() in head
