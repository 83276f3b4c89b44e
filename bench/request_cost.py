"""What one publish request costs the app itself, apart from the network, the HTTP parser and the
deliveries: wsguard's ``POST /api/publish`` against bare Starlette's ``POST /publish``.

Usage: ``python bench/request_cost.py [--requests 5000] [--repeats 3]``. Each app is built in this
process, started through its lifespan, and called with the same ASGI ``http`` scope and body
(wsguard's with an admin's bearer token from its ``--dev`` endpoint) ``--requests`` times; the CPU
time per request is the least of ``--repeats`` repetitions. The event is for a user with no
connection, so no delivery is counted; what is left is each app's own work: routing, the request
and response objects, and for wsguard the token, the event's checks, the backend's offset and
epoch, and the metrics. The ASGI call is made by hand, not through httpx's ``ASGITransport``:
that client's own work, about 130 us a request here, is ten times the difference this compares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bare_server
from wsguard.server.guard import create_app
from wsguard.settings import Settings

EVENT = {
    "user_id": "nobody",
    "thread_id": None,
    "event": "agent_thinking",
    "data": {"n": 1, "text": "x" * 40},
}
"""The load client's event (``bench/loadgen.py``), for a user with no connection."""


async def call(
    app: ASGIApp, path: str, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> list[Message]:
    """One ``POST path`` with ``body`` as JSON, the headers an HTTP client sends; what the app sent."""
    payload = json.dumps(body).encode()
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if received:
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            (b"user-agent", b"python-httpx/0.28.1"),
            (b"content-length", str(len(payload)).encode()),
            (b"content-type", b"application/json"),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    return sent


async def measure(app: ASGIApp, path: str, requests: int, repeats: int, admin: bool) -> float:
    """The least CPU time per request (us) over ``repeats`` runs of ``requests``, inside the
    app's lifespan."""
    startup: asyncio.Queue[Message] = asyncio.Queue()
    replies: asyncio.Queue[Message] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def send(message: Message) -> None:
        await replies.put(message)

    async def run_lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get, send)

    lifespan = asyncio.create_task(run_lifespan())
    if (await replies.get())["type"] != "lifespan.startup.complete":
        raise RuntimeError("the app did not start")
    headers: list[tuple[bytes, bytes]] = []
    if admin:
        issued = await call(app, "/api/dev/tokens", {"user_id": "bench-admin", "admin": True}, [])
        token = json.loads(issued[1]["body"])["token"]
        headers.append((b"authorization", f"Bearer {token}".encode()))
    answer = await call(app, path, EVENT, headers)
    if answer[0]["status"] != 200:
        raise RuntimeError(f"{path} answered {answer[0]['status']}: {answer[1]['body']!r}")
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(requests):
            await call(app, path, EVENT, headers)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    await startup.put({"type": "lifespan.shutdown"})
    await lifespan
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = Settings(dev=True, max_connections_per_user=100, connect_rate_per_user=0)
    wsguard_us = asyncio.run(measure(create_app(settings), "/api/publish", args.requests, args.repeats, True))
    bare_us = asyncio.run(measure(bare_server.app, "/publish", args.requests, args.repeats, False))
    print(f"app CPU per publish request: wsguard {wsguard_us:.1f} us, bare Starlette {bare_us:.1f} us")
    print(f"wsguard / bare: {wsguard_us / bare_us:.2f}, difference {wsguard_us - bare_us:.1f} us a request")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
