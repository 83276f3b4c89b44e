"""Client-side helpers for the cluster tests: open or be refused, publish, read a thread, and
keep events flowing while Redis goes away."""

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from wsguard.backends.redis.keyspace import Keys
from wsguard.processes import ServerProcess
from wsguard.processes.clients import Frame, receive, send
from wsguard.processes.redis_cluster import RedisClusterServers
from wsguard.processes.redis_server import RedisServer
from wsguard.redis_url import is_cluster_url

AnyRedis = RedisServer | RedisClusterServers
"""A private Redis or a private Redis Cluster: both give ``url`` and a synchronous ``client()``."""


def keys_of(redis_server: AnyRedis) -> Keys:
    """The names the instances use there (hash tags on a cluster)."""
    return Keys(hash_tags=is_cluster_url(redis_server.url))


def config_set(redis_server: AnyRedis, name: str, value: str) -> None:
    """Set a server parameter on every server (a cluster client sends CONFIG SET to one node)."""
    if isinstance(redis_server, RedisServer):
        with redis_server.client() as client:
            client.config_set(name, value)
        return
    for node in redis_server.nodes:
        if node.alive:
            with redis_server.node_client(node.port) as client:
                client.config_set(name, value)


async def open_or_refused(ws_url: str, token: str) -> ClientConnection | int:
    """The open socket after its ``welcome``, or the close code it was refused with."""
    socket = await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    try:
        frame = await receive(socket)
    except ConnectionClosed:
        return socket.close_code or 0
    assert frame["type"] == "welcome", frame
    return socket


async def close_code(socket: ClientConnection, timeout: float = 5.0) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            await socket.wait_closed()
    except TimeoutError:
        return None
    return socket.close_code


def publish(instance: ServerProcess, admin: dict[str, str], user_id: str, thread_id: str | None, event: str,
            data: dict[str, Any]) -> httpx.Response:  # fmt: skip
    body = {"user_id": user_id, "thread_id": thread_id, "event": event, "data": data}
    return instance.http.post("/api/publish", headers=admin, json=body)


async def subscribe(socket: ClientConnection, thread_id: str, since: dict[str, Any] | None = None) -> Frame:
    """Subscribe; returns the ``subscribed`` frame (replayed events before it are left unread: use
    :func:`read_until_subscribed` to collect them)."""
    frames = await read_until_subscribed(socket, thread_id, since)
    return frames[-1]


async def read_until_subscribed(
    socket: ClientConnection, thread_id: str, since: dict[str, Any] | None = None
) -> list[Frame]:
    command: dict[str, Any] = {"type": "subscribe", "thread_id": thread_id}
    if since is not None:
        command["since"] = since
    await send(socket, **command)
    frames: list[Frame] = []
    while True:
        frame = await receive(socket)
        frames.append(frame)
        if frame["type"] == "subscribed":
            return frames


async def no_more_frames(socket: ClientConnection, quiet: float = 0.3) -> bool:
    """True when nothing else arrives for ``quiet`` seconds (no duplicate on its way)."""
    try:
        async with asyncio.timeout(quiet):
            text = await socket.recv()
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected extra frame: {json.loads(text)}")


def lease_keys(redis_server: AnyRedis) -> list[bytes]:
    with redis_server.client() as client:
        return list(client.scan_iter(keys_of(redis_server).lease_pattern()))


def lease_count(redis_server: AnyRedis, user_id: str) -> int:
    with redis_server.client() as client:
        count: int = client.hlen(keys_of(redis_server).leases(user_id))
        return count


@dataclass
class Traffic:
    """A publisher on one instance, and a sampler of every instance's ``wsguard_backend_up``."""

    publisher: ServerProcess
    watched: list[ServerProcess]
    results: list[tuple[int, float, int]] = field(default_factory=list)
    """(n, sent at, HTTP status)"""
    up_samples: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        admin = self.publisher.auth("operator", admin=True)
        n = 0
        while not self.stop.is_set():
            n += 1
            sent_at = time.monotonic()
            status = publish(self.publisher, admin, "steady", "feed", "tick", {"n": n}).status_code
            self.results.append((n, sent_at, status))
            self.up_samples.append(min(i.metrics()["wsguard_backend_up"] for i in self.watched))
            time.sleep(0.03)
