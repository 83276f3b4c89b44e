"""The test server helper never mistakes a stranger on its port for the server it started."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wsguard.processes import ServerProcess, process


class _AlwaysHealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def stranger() -> Iterator[int]:
    """Another process's server on a loopback port, answering 200 to everything."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysHealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_port_taken_after_the_probe_is_retried_on_a_fresh_one(
    stranger: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([stranger])
    real_free_port = process.free_port
    monkeypatch.setattr(process, "free_port", lambda: next(ports, None) or real_free_port())
    with ServerProcess() as server:
        assert server.port != stranger
        assert "wsguard_connections_active" in server.metrics()
