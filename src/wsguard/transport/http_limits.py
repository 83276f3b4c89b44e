"""The limits on an HTTP request head before wsguard's app sees it, as plain decisions.

uvicorn parses the request head with h11 before any WebSocket code runs; h11 bounds only the
bytes it buffers for an unfinished head (16 KiB by default, answered with a 400) and nothing
else, and the ``websockets`` parser that reads the head again after the upgrade gives up on a
line over 8 KiB without answering. These fixed limits sit below both, so that every head the
app sees is one both parsers accept, and every head over them gets an HTTP answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD_BYTES = 32768
"""The whole request head: request line and every header line, with their line ends."""
MAX_LINE_BYTES = 8192
"""One line of the head (``websockets`` refuses longer ones after the upgrade)."""
MAX_HEADERS = 100
"""Header lines in one head (``websockets`` refuses more than 128)."""


@dataclass(frozen=True, slots=True)
class HeadRefusal:
    """Why a request head is refused, and the status that says so."""

    status: int
    reason: str
    """The label of ``wsguard_http_refused_total``."""
    message: str


def check_head(
    method: bytes,
    target: bytes,
    http_version: bytes,
    headers: list[tuple[bytes, bytes]],
) -> HeadRefusal | None:
    """The refusal for a parsed request head, or ``None`` when it is within every limit.

    ``headers`` are (lower-cased name, value) pairs as h11 gives them; h11 strips the optional
    whitespace around values, so the line lengths computed here are at most the ones received.
    """
    request_line = len(method) + len(target) + len(b"  HTTP/1.1\r\n")
    if request_line > MAX_LINE_BYTES:
        return HeadRefusal(
            HTTPStatus.REQUEST_URI_TOO_LONG, "line_too_long", f"request line over {MAX_LINE_BYTES} bytes"
        )
    if len(headers) > MAX_HEADERS:
        return HeadRefusal(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too_many_headers", f"more than {MAX_HEADERS} headers"
        )
    head = request_line + 2
    for name, value in headers:
        line = len(name) + len(value) + len(b": \r\n")
        if line > MAX_LINE_BYTES:
            return HeadRefusal(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "line_too_long",
                f"header line over {MAX_LINE_BYTES} bytes",
            )
        head += line
    if head > MAX_HEAD_BYTES:
        return HeadRefusal(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            "head_too_large",
            f"request head over {MAX_HEAD_BYTES} bytes",
        )
    if http_version != b"1.1" and _asks_for_upgrade(headers):
        return HeadRefusal(HTTPStatus.BAD_REQUEST, "bad_request", "a WebSocket upgrade needs HTTP/1.1")
    return None


def _asks_for_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"connection" and b"upgrade" in (token.strip().lower() for token in value.split(b","))
        for name, value in headers
    )


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <phrase>`` with its line end."""
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")


def refusal_response(status: int, message: str) -> bytes:
    """A complete response that ends the connection: the status, a short text, ``connection: close``."""
    body = f"{message}\n".encode()
    return (
        status_line(status)
        + b"content-type: text/plain; charset=utf-8\r\n"
        + f"content-length: {len(body)}\r\n".encode("ascii")
        + b"connection: close\r\n\r\n"
        + body
    )
