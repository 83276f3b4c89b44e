"""uvicorn's httptools HTTP protocol with the edge's limits (:class:`~.http_guard.EdgeGuard`).

llhttp, under httptools, parses as it reads and keeps no bound of its own on a request head:
the head's limits are checked on its callbacks. A head is whole at ``on_headers_complete``,
where :func:`~.http_limits.check_head` judges it as for h11; until then the bytes received are
counted, and past :data:`~.http_limits.MAX_HEAD_BYTES` the head is refused (431) without waiting
for its end. The count starts with the first read after the request before it ended, so a
pipelined head may run over by what arrived in the same read as that request.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wsguard.transport.http_guard import EdgeGuard
from wsguard.transport.http_limits import MAX_HEAD_BYTES, HeadRefusal, check_head

HEAD_TOO_LARGE = HeadRefusal(431, "head_too_large", f"request head over {MAX_HEAD_BYTES} bytes")


class _RefusedHead(Exception):
    """Raised from a parser callback: llhttp stops, and httptools raises it on as its error."""


class GuardedHttpToolsProtocol(EdgeGuard, HttpToolsProtocol):
    """httptools' protocol, configured by :func:`~.http_protocol.http_protocol_class`."""

    parser_name = "httptools"
    refusal: HeadRefusal | None = None
    awaiting_head = True
    """From the end of a request (or the start) until its head is whole."""
    head_bytes = 0
    """Bytes received while :attr:`awaiting_head`."""

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.awaiting_head and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.refuse_head(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        """llhttp keeps a value's trailing whitespace, which RFC 9110 excludes and h11 and the
        ``websockets`` parser strip; uvicorn 0.52 keeps it, and then takes ``Upgrade:
        websocket `` for no upgrade at all. Stripped here, on every supported uvicorn."""
        super().on_header(name, value.rstrip(b" \t"))

    def on_message_complete(self) -> None:
        """The next bytes are the next request's head."""
        super().on_message_complete()
        self.awaiting_head = True

    def on_headers_complete(self) -> None:
        self.awaiting_head = False
        self.head_bytes = 0
        self.cancel_header_timer()
        version = self.parser.get_http_version().encode("ascii")
        refusal = check_head(self.parser.get_method(), self.url, version, self.headers)
        if refusal is not None:
            self.refusal = refusal
            raise _RefusedHead(refusal.message)
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        """uvicorn's upgrade, handing the head to wsguard's WebSocket protocol as llhttp parsed
        it when that protocol takes it."""
        ws_class = self.parsed_upgrade_class(self.scope["method"].encode("ascii"), self.headers)
        if ws_class is None:
            super().handle_websocket_upgrade()
        else:
            self.connections.discard(self)
            self.hand_over(ws_class, self.url, self.headers)
        # The parser holds this protocol, whose connection_lost (which drops the parser) will
        # never run now: without this, every upgraded connection is a cycle for the collector.
        self.parser = None  # type: ignore[assignment]

    def send_400_response(self, msg: str) -> None:
        self.refuse_head(self.refusal)
