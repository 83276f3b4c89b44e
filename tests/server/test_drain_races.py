"""Races around the drain, against a real ``wsguard serve`` process: readiness turns 503 in the
signal handler itself, and a connection whose admission was still awaiting when the drain began
is refused or closed with 1001 instead of holding the shutdown for ``--drain-timeout``."""

import signal

import httpx

from wsguard.testing import StartServer


def test_readyz_answers_503_from_the_moment_sigterm_arrives(start_server: StartServer) -> None:
    server = start_server()
    assert server.process is not None
    after: list[int] = []
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        assert http.get("/readyz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        for _ in range(20):
            try:
                after.append(http.get("/readyz").status_code)
            except httpx.TransportError:
                break
    assert after, "the server stopped listening before the drain"
    assert set(after) == {503}, f"/readyz after SIGTERM answered {after}"
    assert server.wait(timeout=15) == 0
