"""What the client holds for its subscriptions is released on every path, and an unexpected
error stops it and ends the application's iteration with that error instead of hanging it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

import wsguard.client as wc
from wsguard.processes import ServerProcess, StartServer

_users = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--connect-rate-per-user", "0") as running:
        yield running


def test_subscribe_refs_and_tracker_entries_are_released(server: ServerProcess) -> None:
    user = f"refs-{next(_users)}"
    admin = server.auth("ops", admin=True)

    async def scenario() -> None:
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            for n in range(20):
                await client.subscribe(f"t{n}")
            assert client._subscribe_refs == {}, "an answered subscribe keeps no ref"
            with pytest.raises(wc.CommandError):
                await client.subscribe("not a thread id!")
            for n in range(20):
                body = {"user_id": user, "thread_id": f"t{n}", "event": "e", "data": {}}
                # Blocking on purpose: the client cannot read until its unsubscribe has begun,
                # so these events arrive after the tracker forgot their thread.
                server.http.post("/api/publish", json=body, headers=admin).raise_for_status()
                await client.unsubscribe(f"t{n}")
            await client.ping()
            assert client._subscribe_refs == {}
            assert len(client.tracker) == 0, "late events of left threads must not be tracked"

    asyncio.run(scenario())


async def _drain(client: wc.Client) -> None:
    async for _ in client:
        pass


def test_an_unexpected_error_ends_iteration_with_it(start_server: StartServer) -> None:
    server = start_server("--connect-rate-per-user", "0")
    user = f"crash-{next(_users)}"
    calls = itertools.count()

    async def tickets() -> str:
        if next(calls) > 0:
            raise LookupError("a bug in the ticket provider")
        response = server.http.post("/api/tickets", headers=server.auth(user))
        response.raise_for_status()
        ticket: str = response.json()["ticket"]
        return ticket

    async def scenario() -> None:
        client = wc.Client(server.ws_url, ticket_provider=tickets)
        async with client:
            await client.drop(clean=False)
            with pytest.raises(LookupError, match="ticket provider"):
                await asyncio.wait_for(_drain(client), 10)
            assert isinstance(client.failure, LookupError)
            assert client.closed_reason is not None

    asyncio.run(scenario())
