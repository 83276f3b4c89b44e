"""Property: whatever many users do (connect, subscribe, publish, drop, reconnect), no event ever
reaches a connection of another user or of an unsubscribed thread, every event reaches each
connection of its user that was subscribed when it was published and stayed open, and every count
returns to 0."""

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wsguard.processes import ServerProcess, eventually_async
from wsguard.processes.clients import drop, open_socket, send

USERS = ["u0", "u1", "u2", "u3"]
THREADS = ["t0", "t1", "shared"]


@pytest.fixture(scope="module")
def iso_server() -> Iterator[ServerProcess]:
    flags = ("--connect-rate-per-user", "0", "--max-connections-per-user", "3")
    with ServerProcess(*flags) as server:
        yield server


@dataclass
class Client:
    user_id: str
    socket: ClientConnection
    session_id: str
    subscribed: set[str] = field(default_factory=set)
    ever_subscribed: set[str] = field(default_factory=set)
    frames: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    expected_steps: set[int] = field(default_factory=set)
    """The publish steps this client must receive if it is still open at the end."""
    settled: bool = False
    """It answered the final ping while open: everything queued for it before has arrived."""


async def _read_all(client: Client) -> None:
    try:
        async for text in client.socket:
            client.frames.append(json.loads(text))
    except ConnectionClosed:
        pass


async def _answered(client: Client, reply_type: str, ref: str, timeout: float = 10.0) -> bool:
    """Wait for the reply with ``ref``; False if the connection ends first (an eviction)."""

    async def probe() -> bool | None:
        if any(f["type"] == reply_type and f.get("ref") == ref for f in client.frames):
            return True
        return False if client.reader is None or client.reader.done() else None

    answer = await eventually_async(probe, lambda seen: seen is not None, timeout=timeout, what=ref)
    return bool(answer)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("connect"), st.sampled_from(USERS)),
        st.tuples(st.just("subscribe"), st.integers(0, 20), st.sampled_from(THREADS)),
        st.tuples(st.just("publish"), st.sampled_from(USERS), st.sampled_from([*THREADS, None])),
        st.tuples(st.just("drop"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("reconnect"), st.integers(0, 20)),
    ),
    min_size=5,
    max_size=40,
)


async def _run(
    server: ServerProcess, tokens: dict[str, str], admin: str, program: list[tuple[Any, ...]]
) -> list[Client]:
    clients: list[Client] = []
    live: list[Client] = []
    async with httpx.AsyncClient(base_url=server.base_url) as http:

        async def connect(user_id: str, resume: str | None = None) -> None:
            socket, welcome = await open_socket(server.ws_url, tokens[user_id], resume=resume)
            client = Client(user_id, socket, welcome["session_id"])
            client.reader = asyncio.create_task(_read_all(client))
            clients.append(client)
            live.append(client)

        async def publish(step: int, user_id: str, thread_id: str | None) -> None:
            body = {
                "user_id": user_id,
                "thread_id": thread_id,
                "event": "e",
                "data": {"for": user_id, "step": step},
            }
            response = await http.post(
                "/api/publish", json=body, headers={"Authorization": f"Bearer {admin}"}
            )
            assert response.status_code == 200
            for client in live:
                if client.user_id == user_id and (thread_id is None or thread_id in client.subscribed):
                    client.expected_steps.add(step)

        for step, operation in enumerate(program):
            kind = operation[0]
            if kind == "connect":
                await connect(operation[1])
            elif kind == "subscribe" and live:
                client = live[operation[1] % len(live)]
                client.ever_subscribed.add(operation[2])
                await send(client.socket, type="subscribe", thread_id=operation[2], ref=f"s{step}")
                if await _answered(client, "subscribed", f"s{step}"):
                    client.subscribed.add(operation[2])
            elif kind == "publish":
                await publish(step, operation[1], operation[2])
            elif kind == "drop" and live:
                client = live.pop(operation[1] % len(live))
                if operation[2]:
                    await client.socket.close()
                else:
                    drop(client.socket)
            elif kind == "reconnect" and live:
                client = live.pop(operation[1] % len(live))
                drop(client.socket)
                await connect(client.user_id, resume=client.session_id)
        # Whatever the program did, every connection still open follows the shared thread, and
        # every user still connected gets one event per thread that any of its connections
        # follows, and one for the user: each must reach every one of its connections.
        final = itertools.count(len(program))
        for client in live:
            ref = f"s{next(final)}"
            client.ever_subscribed.add("shared")
            with contextlib.suppress(ConnectionClosed):
                await send(client.socket, type="subscribe", thread_id="shared", ref=ref)
            if await _answered(client, "subscribed", ref):
                client.subscribed.add("shared")
        for user_id in sorted({client.user_id for client in live}):
            followed = set().union(*(c.subscribed for c in live if c.user_id == user_id))
            for thread_id in [None, *sorted(followed)]:
                await publish(next(final), user_id, thread_id)
        for client in live:
            with contextlib.suppress(ConnectionClosed):
                await send(client.socket, type="ping", ref="final")
            client.settled = await _answered(client, "pong", "final")
        for client in live:
            await client.socket.close()
        await asyncio.gather(*(c.reader for c in clients if c.reader))
    return clients


def test_no_event_crosses_users_and_counts_return_to_zero(iso_server: ServerProcess) -> None:
    tokens = {user: iso_server.token(user) for user in USERS}
    admin = iso_server.token("ops", admin=True)
    delivered = 0

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(operations)
    def check(program: list[tuple[Any, ...]]) -> None:
        nonlocal delivered
        clients = asyncio.run(_run(iso_server, tokens, admin, program))
        for client in clients:
            for frame in client.frames:
                if frame["type"] != "event":
                    continue
                assert frame["data"]["for"] == client.user_id, (client.user_id, frame)
                if frame["thread_id"] is not None:
                    assert frame["thread_id"] in client.ever_subscribed, (client, frame)
            offsets: dict[str, list[int]] = {}
            for frame in client.frames:
                if frame["type"] == "event" and frame["thread_id"] is not None:
                    offsets.setdefault(frame["thread_id"], []).append(frame["offset"])
            for thread_id, seen in offsets.items():
                assert seen == sorted(set(seen)), f"{thread_id}: duplicates or disorder {seen}"
            if client.settled:
                received = {f["data"]["step"] for f in client.frames if f["type"] == "event"}
                missing = client.expected_steps - received
                assert not missing, f"{client.user_id} never received steps {missing}: {program}"
                delivered += len(client.expected_steps)
        iso_server.wait_idle(timeout=5.0)

    check()
    assert delivered > 0, "no example delivered anything: the property was never exercised"
    assert iso_server.metrics()["wsguard_sweeper_repairs_total"] == 0
