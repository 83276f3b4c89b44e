"""Byte limits count UTF-8 bytes on the wire, not characters: 300 four-byte characters are
1,200 bytes."""

import asyncio

from websockets.exceptions import ConnectionClosed

from wsguard.processes import StartServer
from wsguard.processes.clients import open_socket, receive, send

WIDE = "\U0001f600" * 300
"""300 characters, 1,200 bytes in UTF-8."""


def test_an_event_is_measured_in_bytes_against_max_message_bytes(start_server: StartServer) -> None:
    server = start_server("--max-message-bytes", "1000")
    admin = server.auth("ops", admin=True)
    body = {"user_id": "u", "thread_id": "t", "event": "e", "data": {"text": WIDE}}
    response = server.http.post("/api/publish", json=body, headers=admin)
    assert response.status_code == 413, response.text
    narrow = {**body, "data": {"text": "a" * 300}}
    assert server.http.post("/api/publish", json=narrow, headers=admin).status_code == 200


def test_the_queue_limit_counts_bytes(start_server: StartServer) -> None:
    """A frame of about 500 characters but 1,400 bytes cannot fit a 1,100-byte queue: 4008."""
    server = start_server("--queue-limit-bytes", "1100")
    admin = server.auth("ops", admin=True)

    async def scenario() -> None:
        socket, _ = await open_socket(server.ws_url, server.token("wide"))
        await send(socket, type="subscribe", thread_id="t")
        assert (await receive(socket))["type"] == "subscribed"
        body = {"user_id": "wide", "thread_id": "t", "event": "e", "data": {"text": WIDE}}
        server.http.post("/api/publish", json=body, headers=admin).raise_for_status()
        try:
            frame = await receive(socket)
            raise AssertionError(f"a frame over the byte limit was delivered: {frame['type']}")
        except ConnectionClosed:
            pass
        assert socket.close_code == 4008

    asyncio.run(scenario())
