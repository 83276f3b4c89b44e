"""The client against a real server process, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import wsguard.client as wc
from wsguard.processes import ServerProcess, eventually_async

_users = itertools.count(1)

SHORT_TTL = 4
"""A short token's lifetime: ``exp`` is whole seconds, so it expires 3 to 4 s after it is issued."""


def fresh_user(prefix: str) -> str:
    """A user id no other test touches, so that tests sharing a server cannot see each other."""
    return f"{prefix}-{next(_users)}-{random.randrange(1 << 30)}"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    flags = ("--demo-step-delay", "0.001", "--connect-rate-per-user", "0", "--run-rate-per-user", "0")
    with ServerProcess(*flags, "--retention-events", "10000") as process:
        yield process


class Publisher:
    """Publishes numbered events to one thread over ``POST /api/publish`` and records them."""

    def __init__(self, server: ServerProcess, user_id: str, thread_id: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=server.base_url, headers=server.auth("publisher", admin=True), timeout=10.0
        )
        self.user_id = user_id
        self.thread_id = thread_id
        self.published: list[tuple[int, int]] = []

    async def publish(self) -> int:
        number = len(self.published) + 1
        response = await self.http.post(
            "/api/publish",
            json={
                "user_id": self.user_id,
                "thread_id": self.thread_id,
                "event": "tick",
                "data": {"n": number},
            },
        )
        response.raise_for_status()
        offset: int = response.json()["offset"]
        self.published.append((offset, number))
        return offset

    async def run_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish()

    async def aclose(self) -> None:
        await self.http.aclose()


class Collector:
    """Drains a client into a list, as an application's ``async for`` would."""

    def __init__(self, client: wc.Client) -> None:
        self.events: list[wc.Event] = []
        self.notices: list[wc.RecoveryFailed] = []
        self.task = asyncio.create_task(self._drain(client))

    async def _drain(self, client: wc.Client) -> None:
        async for item in client:
            if isinstance(item, wc.Event):
                self.events.append(item)
            else:
                self.notices.append(item)

    def seen(self) -> list[tuple[int, int]]:
        return [(event.offset or 0, event.data["n"]) for event in self.events]

    async def until(self, count: int, *, timeout: float = 10.0) -> list[wc.Event]:
        async def probe() -> list[wc.Event]:
            return self.events

        await eventually_async(
            probe, lambda events: len(events) >= count, timeout=timeout, what=f"{count} events"
        )
        return self.events


def test_subscribe_and_receive_published_events_with_their_ids(server: ServerProcess) -> None:
    user = fresh_user("basic")

    async def scenario() -> None:
        publisher = Publisher(server, user, "t-basic")
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            assert client.user_id == user
            assert client.session_id
            assert client.connection_id
            subscribed = await client.subscribe("t-basic")
            assert subscribed is not None
            assert (subscribed.thread_id, subscribed.recovered) == ("t-basic", False)
            collector = Collector(client)
            for _ in range(3):
                await publisher.publish()
            events = await collector.until(3)
            assert [(e.event, e.thread_id, e.data["n"]) for e in events] == [
                ("tick", "t-basic", 1),
                ("tick", "t-basic", 2),
                ("tick", "t-basic", 3),
            ]
            assert [e.offset for e in events] == [offset for offset, _ in publisher.published]
            assert len({e.epoch for e in events}) == 1
        assert client.closed_reason is not None
        assert client.closed_reason.by_client
        await asyncio.wait_for(collector.task, 5.0)
        await publisher.aclose()

    asyncio.run(scenario())


def test_demo_run_started_by_message_streams_in_protocol_order(server: ServerProcess) -> None:
    user = fresh_user("demo")

    async def scenario() -> None:
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            await client.subscribe("t-demo")
            collector = Collector(client)
            await client.send_message("t-demo", "hello")

            async def probe() -> list[str]:
                return [event.event for event in collector.events]

            names = await eventually_async(
                probe, lambda seen: "agent_completed" in seen, timeout=10.0, what="a whole run"
            )
            assert names[0] == "agent_started"
            assert names[-1] == "agent_completed"
            assert "agent_thinking" in names
            assert len({(e.run_id, e.request_id) for e in collector.events}) == 1
            offsets = [event.offset or 0 for event in collector.events]
            assert offsets == list(range(1, len(offsets) + 1))

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_100_drops_at_random_points_lose_and_repeat_nothing(server: ServerProcess) -> None:
    """Half clean closes, half TCP aborts, while events stream; the app sees exactly the stream."""
    user = fresh_user("cycles")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)

    async def scenario() -> None:
        publisher = Publisher(server, user, "t-cycles")
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            await client.subscribe("t-cycles")
            collector = Collector(client)
            session_id = client.session_id
            connection_ids = {client.connection_id}
            stop = asyncio.Event()
            publishing = asyncio.create_task(publisher.run_until(stop))
            started = time.monotonic()
            for cycle in range(100):
                await asyncio.sleep(rng.uniform(0, 0.02))
                await client.drop(clean=cycle % 2 == 0)
                await asyncio.wait_for(client.wait_connected(), 10.0)
                assert client.session_id == session_id, f"cycle {cycle}: the session was not resumed"
                connection_ids.add(client.connection_id)
            stop.set()
            await publishing
            last = publisher.published[-1][0]

            async def probe() -> list[tuple[int, int]]:
                return collector.seen()

            await eventually_async(
                probe,
                lambda seen: bool(seen) and seen[-1][0] >= last,
                timeout=10.0,
                what=f"the last published offset {last}",
            )
            elapsed = time.monotonic() - started
            assert collector.seen() == publisher.published, f"seed {seed}"
            assert collector.notices == [], f"seed {seed}"
            assert len(connection_ids) == 101
            assert client.connections_opened == 101
            assert client.replayed_events > 0, "no drop ever needed a replay: the test proved nothing"
            assert len(publisher.published) > 200
            assert elapsed < 40, f"100 cycles took {elapsed:.1f}s"
            admin = {"Authorization": f"Bearer {server.token('admin', admin=True)}"}

            async def connections() -> int:
                async with httpx.AsyncClient(base_url=server.base_url, headers=admin) as http:
                    response = await http.get(f"/api/admin/users/{user}/connections")
                    response.raise_for_status()
                    return len(response.json())

            await eventually_async(
                connections, lambda n: n == 1, timeout=5.0, what="one connection once settled"
            )
        await publisher.aclose()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_100_drops_during_demo_runs_see_exactly_what_the_server_logged(
    server: ServerProcess,
) -> None:
    """Agent runs stream while the client drops 100 times; compare with a full replay."""
    user = fresh_user("runs")
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    token = server.token(user)

    async def start_runs(stop: asyncio.Event, run_ids: list[str]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            while not stop.is_set():
                response = await http.post("/api/threads/t-runs/runs", json={"text": "go"})
                response.raise_for_status()
                run_ids.append(response.json()["run_id"])
                await asyncio.sleep(0.01)

    def shape(event: wc.Event) -> tuple[Any, ...]:
        return (event.offset, event.epoch, event.event, event.run_id, event.request_id, event.data)

    async def scenario() -> None:
        async with wc.connect(server.ws_url, token=token) as client:
            await client.subscribe("t-runs")
            collector = Collector(client)
            stop = asyncio.Event()
            run_ids: list[str] = []
            starting = asyncio.create_task(start_runs(stop, run_ids))
            for cycle in range(100):
                await asyncio.sleep(rng.uniform(0, 0.02))
                await client.drop(clean=cycle % 2 == 1)
                await asyncio.wait_for(client.wait_connected(), 10.0)
            stop.set()
            await starting

            async def completed() -> set[str | None]:
                return {e.run_id for e in collector.events if e.event == "agent_completed"}

            await eventually_async(
                completed, lambda done: done >= set(run_ids), timeout=10.0, what="every run done"
            )
            seen = [shape(event) for event in collector.events]
            assert collector.notices == []
        async with wc.connect(server.ws_url, token=token) as reference:
            epoch = collector.events[0].epoch
            assert epoch is not None
            full = Collector(reference)
            replay = await reference.subscribe("t-runs", since=wc.Position(epoch, 0))
            assert replay is not None
            assert replay.recovered
            logged = [shape(event) for event in await full.until(replay.replayed)]
        assert seen == logged, f"seed {seed}"
        assert len(run_ids) > 20
        for run_id in run_ids:
            names = [name for _, _, name, run, _, _ in seen if run == run_id]
            assert names[0] == "agent_started"
            assert names[-1] == "agent_completed"
        assert client.replayed_events > 0

    asyncio.run(scenario())


def test_a_resume_replaces_the_open_connection_and_the_replaced_client_stops(
    server: ServerProcess,
) -> None:
    user = fresh_user("replace")

    async def scenario() -> None:
        publisher = Publisher(server, user, "t-replace")
        first = wc.connect(server.ws_url, token=server.token(user))
        await first.start()
        await first.subscribe("t-replace")
        second = wc.connect(server.ws_url, token=server.token(user), resume_session=first.session_id)
        await second.start()
        assert second.session_id == first.session_id
        reason = await asyncio.wait_for(first.wait_closed(), 5.0)
        assert (reason.code, reason.reason, reason.by_client) == (4002, "replaced", False)
        assert "replaced" in reason.why
        assert [item async for item in first] == [], "a stopped client's iteration must end"
        with pytest.raises(wc.ClientClosed):
            await first.subscribe("t-replace")
        await second.subscribe("t-replace")
        collector = Collector(second)
        await publisher.publish()
        await collector.until(1)
        assert second.connected
        assert second.connections_opened == 1, "the survivor must not have been evicted"
        assert first.connections_opened == 1, "the replaced client must not fight back"
        await second.close()
        await publisher.aclose()

    asyncio.run(scenario())


def test_two_clients_resuming_one_session_settle_instead_of_evicting_each_other_forever(
    server: ServerProcess,
) -> None:
    user = fresh_user("fight")

    async def scenario() -> None:
        origin = wc.connect(server.ws_url, token=server.token(user))
        await origin.start()
        session = origin.session_id
        await origin.close()
        clients = [
            wc.connect(server.ws_url, token=server.token(user), resume_session=session) for _ in range(2)
        ]
        await asyncio.gather(*(client.start() for client in clients), return_exceptions=True)

        async def stopped_count() -> int:
            return sum(client.closed_reason is not None for client in clients)

        await eventually_async(stopped_count, lambda n: n >= 1, timeout=5.0, what="one replaced")
        for _ in range(3):
            for client in clients:
                if client.connected:
                    await client.drop(clean=False)
                    await asyncio.wait_for(client.wait_connected(), 5.0)
        stopped = [client for client in clients if client.closed_reason is not None]
        running = [client for client in clients if client.closed_reason is None]
        assert len(running) == 1, [client.closed_reason for client in clients]
        assert stopped[0].closed_reason is not None
        assert stopped[0].closed_reason.code == 4002
        opened = [client.connections_opened for client in clients]
        # Settled, not just quiet for a while: the stopped client has finished for good, the
        # survivor answers a round-trip, and the server holds exactly the survivor's socket.
        await asyncio.wait_for(stopped[0].wait_closed(), 5.0)
        await running[0].ping()
        listed = await asyncio.to_thread(
            server.http.get, f"/api/admin/users/{user}/connections", headers=server.auth("admin", admin=True)
        )
        assert [c["connection_id"] for c in listed.json()] == [running[0].connection_id]
        assert [client.connections_opened for client in clients] == opened
        assert running[0].connected
        await running[0].close()

    asyncio.run(scenario())


def test_a_failed_recovery_is_reported_so_the_application_can_reload(
    server: ServerProcess,
) -> None:
    user = fresh_user("recovery")

    async def scenario() -> None:
        publisher = Publisher(server, user, "t-recovery")
        await publisher.publish()
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            collector = Collector(client)
            stale = wc.Position("an-epoch-that-never-was", 1)
            subscribed = await client.subscribe("t-recovery", since=stale)
            assert subscribed is not None
            assert not subscribed.recovered
            await eventually_async(
                _returning(collector.notices), bool, timeout=5.0, what="a RecoveryFailed notice"
            )
            notice = collector.notices[0]
            assert notice.thread_id == "t-recovery"
            assert notice.asked == stale
            assert notice.position.offset == 1
            await publisher.publish()
            events = await collector.until(1)
            assert [(e.offset, e.data["n"]) for e in events] == [(2, 2)]
        await publisher.aclose()

    asyncio.run(scenario())


def test_a_successful_recovery_replays_what_was_missed_silently(server: ServerProcess) -> None:
    user = fresh_user("replay")

    async def scenario() -> None:
        publisher = Publisher(server, user, "t-replay")
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            await client.subscribe("t-replay")
            collector = Collector(client)
            await publisher.publish()
            await collector.until(1)
            position = client.position("t-replay")
        for _ in range(4):
            await publisher.publish()
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            collector = Collector(client)
            subscribed = await client.subscribe("t-replay", since=position)
            assert subscribed is not None
            assert (subscribed.recovered, subscribed.replayed) == (True, 4)
            events = await collector.until(4)
            assert [e.data["n"] for e in events] == [2, 3, 4, 5]
            assert collector.notices == []
        await publisher.aclose()

    asyncio.run(scenario())


def test_a_refused_upgrade_fails_start_at_once_with_the_status(server: ServerProcess) -> None:
    async def scenario() -> None:
        client = wc.connect(server.ws_url, token="not-a-jwt")
        started = time.monotonic()
        with pytest.raises(wc.ClientClosed) as raised:
            await client.start()
        assert raised.value.reason.http_status == 401
        assert client.closed_reason == raised.value.reason
        assert time.monotonic() - started < 2.0
        assert client.failed_attempts == 0

    asyncio.run(scenario())


def test_a_ticket_is_fetched_for_every_connection(server: ServerProcess) -> None:
    user = fresh_user("tickets")
    token = server.token(user)
    fetched: list[str] = []
    fetch = wc.http_ticket_provider(server.base_url, token)

    async def counting_provider() -> str:
        ticket = await fetch()
        fetched.append(ticket)
        return ticket

    async def scenario() -> None:
        async with wc.connect(server.ws_url, ticket_provider=counting_provider) as client:
            assert client.user_id == user
            for clean in (True, False, True):
                await client.drop(clean=clean)
                await asyncio.wait_for(client.wait_connected(), 5.0)
            assert client.connections_opened == 4
        assert len(fetched) == 4
        assert len(set(fetched)) == 4, "a ticket is single-use; each connection needs its own"

    asyncio.run(scenario())


def test_a_reused_ticket_is_refused_and_the_client_stops_and_says_why(
    server: ServerProcess,
) -> None:
    user = fresh_user("reuse")
    ticket = server.http.post("/api/tickets", headers=server.auth(user)).json()["ticket"]

    async def same_ticket() -> str:
        return str(ticket)

    async def scenario() -> None:
        client = wc.connect(server.ws_url, ticket_provider=same_ticket)
        await client.start()
        await client.drop(clean=False)
        reason = await asyncio.wait_for(client.wait_closed(), 5.0)
        assert reason.http_status == 401
        assert client.failed_attempts == 1, "a 401 must not be retried"

    asyncio.run(scenario())


def test_close_releases_the_connection_on_the_server(server: ServerProcess) -> None:
    user = fresh_user("close")
    admin = server.auth("admin", admin=True)

    def count() -> int:
        response = server.http.get(f"/api/admin/users/{user}/connections", headers=admin)
        response.raise_for_status()
        return len(response.json())

    async def connections() -> int:
        return await asyncio.to_thread(count)

    async def scenario() -> None:
        client = wc.connect(server.ws_url, token=server.token(user))
        await client.start()
        assert await connections() == 1
        reason = await client.close()
        assert (reason.code, reason.by_client) == (1000, True)
        assert await client.close() is reason
        await eventually_async(connections, lambda n: n == 0, timeout=5.0, what="released")
        assert not client.connected

    asyncio.run(scenario())


def _returning(value: Any) -> Any:
    async def probe() -> Any:
        return value

    return probe


def test_retry_after_is_honoured_on_a_rate_limited_reconnect() -> None:
    user = fresh_user("ratelimit")
    with ServerProcess("--connect-rate-per-user", "1") as limited:
        token = limited.token(user)

        async def probe_refusal() -> float:
            """Use up the user's connection budget; return the Retry-After of the refusal."""
            refusal: InvalidStatus | None = None
            while refusal is None:
                try:
                    async with ws_connect(
                        limited.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
                    ):
                        pass
                except InvalidStatus as refused:
                    refusal = refused
            assert refusal.response.status_code == 429
            retry_after = wc.parse_retry_after(refusal.response.headers.get("Retry-After"))
            assert retry_after is not None, "429 must carry Retry-After"
            return retry_after

        async def scenario() -> None:
            fast = wc.ReconnectPolicy(base_delay=0.01, max_delay=0.05)
            client = wc.connect(limited.ws_url, token=token, policy=fast)
            await client.start()
            retry_after = await probe_refusal()
            dropped = time.monotonic()
            await client.drop(clean=False)
            await asyncio.wait_for(client.wait_connected(), 10.0)
            waited = time.monotonic() - dropped
            assert client.failed_attempts >= 1, "the reconnect should have met the rate limit"
            assert client.failed_attempts <= 2, "a client that ignores Retry-After hammers"
            assert waited >= min(retry_after, 1.0) * 0.9
            await client.close()

        asyncio.run(scenario())


def test_token_expiry_stops_a_static_token_and_renews_a_token_provider() -> None:
    user = fresh_user("expiry")
    with ServerProcess("--jwt-leeway", "0") as strict:

        async def fresh_token() -> str:
            return await asyncio.to_thread(strict.token, user, ttl=SHORT_TTL)

        async def scenario() -> None:
            static = wc.connect(strict.ws_url, token=strict.token(user, ttl=SHORT_TTL))
            renewing = wc.connect(strict.ws_url, token=fresh_token)
            await static.start()
            await renewing.start()
            reason = await asyncio.wait_for(static.wait_closed(), SHORT_TTL + 10.0)
            assert reason.code == 4401
            await eventually_async(
                _connections_opened(renewing), lambda n: n >= 2, timeout=SHORT_TTL + 10.0, what="a renewal"
            )
            assert renewing.closed_reason is None
            await renewing.close()

        asyncio.run(scenario())


def _connections_opened(client: wc.Client) -> Any:
    async def probe() -> int:
        return client.connections_opened

    return probe


class ServerOnPort(ServerProcess):
    """A server started on a port chosen before, to restart "the same" server."""

    def __init__(self, port: int, *flags: str) -> None:
        super().__init__(*flags)
        self.http.close()
        self.port = port
        self.base_url = f"http://{self.host}:{port}"
        self.ws_url = f"ws://{self.host}:{port}/ws"
        port_flag = self.argv.index("--port")
        self.argv[port_flag + 1] = str(port)
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)


def test_a_server_restart_is_survived_and_the_lost_history_reported() -> None:
    """1001 on shutdown: reconnect (not stop); the new server has a new epoch: reload."""
    user = fresh_user("restart")
    secret = ("--jwt-secret", "client-restart-test-secret-of-32-bytes-or-more", "--drain-timeout", "2")
    quick = wc.ReconnectPolicy(base_delay=0.05, max_delay=0.2, going_away_delay=0.2)

    async def scenario() -> None:
        first = ServerProcess(*secret).start()
        try:
            publisher = Publisher(first, user, "t-restart")
            client = wc.connect(first.ws_url, token=first.token(user), policy=quick)
            await client.start()
            await client.subscribe("t-restart")
            collector = Collector(client)
            for _ in range(3):
                await publisher.publish()
            await collector.until(3)
            await publisher.aclose()
            await asyncio.to_thread(first.stop)
        finally:
            first.kill()
        assert client.closed_reason is None, client.closed_reason
        assert client.last_disconnect is not None
        with ServerOnPort(first.port, *secret) as second:
            await asyncio.wait_for(client.wait_connected(), 10.0)
            assert client.user_id == user
            await eventually_async(
                _returning(collector.notices), bool, timeout=5.0, what="a RecoveryFailed notice"
            )
            notice = collector.notices[0]
            assert notice.asked.offset == 3
            assert notice.position.epoch != notice.asked.epoch
            publisher = Publisher(second, user, "t-restart")
            await publisher.publish()
            events = await collector.until(4)
            assert (events[3].offset, events[3].epoch) == (1, notice.position.epoch)
            assert client.failed_attempts >= 1
            await client.close()
            await publisher.aclose()

    asyncio.run(scenario())


def test_a_refused_subscription_raises_and_is_not_resubscribed(server: ServerProcess) -> None:
    user = fresh_user("badthread")

    async def scenario() -> None:
        async with wc.connect(server.ws_url, token=server.token(user)) as client:
            with pytest.raises(wc.CommandError) as refused:
                await client.subscribe("not a valid thread id!")
            assert refused.value.error.code == "bad_request"
            assert client.tracker.subscriptions == []
            await client.ping()
            assert client.connected

    asyncio.run(scenario())


def test_an_application_that_falls_behind_is_cut_off_as_slow_and_still_loses_nothing() -> None:
    """The client stops reading when the app lags; the server closes 4008; replay fills in."""
    user = fresh_user("slow")
    flags = ("--queue-limit-bytes", "65536", "--write-timeout", "1", "--retention-events", "5000")
    padding = "x" * 16000
    # 12.8 MB: more than loopback's kernel buffers (up to about 6 MB) can hold for a reader that
    # stopped, so the server must cut it off and the rest must come back by replay.
    events = 800

    async def scenario(server: ServerProcess) -> None:
        headers = server.auth("publisher", admin=True)
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=headers) as http,
            wc.connect(server.ws_url, token=server.token(user), max_pending=8) as client,
        ):
            await client.subscribe("t-slow")
            published: list[int] = []
            for number in range(1, events + 1):
                response = await http.post(
                    "/api/publish",
                    json={
                        "user_id": user,
                        "thread_id": "t-slow",
                        "event": "bulk",
                        "data": {"n": number, "padding": padding},
                    },
                )
                response.raise_for_status()
                published.append(response.json()["offset"])
            seen: list[int] = []

            async def consume() -> None:
                async for item in client:
                    assert isinstance(item, wc.Event), item
                    seen.append(item.offset or 0)
                    if len(seen) == len(published):
                        return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consume(), 20.0)
            assert seen == published, f"{client.connections_opened} connections"
            # Whether the rest then came by replay or was still in the kernel's buffers when the
            # close arrived depends on timing; the 100-drop tests assert that replay is used.
            assert client.connections_opened >= 2, "the server should have cut the slow reader"

    with ServerProcess(*flags) as server:
        asyncio.run(scenario(server))


def test_the_documented_example_runs_against_a_real_server(server: ServerProcess) -> None:
    """docs/client.md's example, executed as written, so that it cannot rot."""
    document = Path(__file__).resolve().parents[2] / "docs" / "client.md"
    source = document.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "docs_client_example"}
    exec(compile(source, str(document), "exec"), namespace)
    follow = namespace["follow"]
    names = asyncio.run(follow(server.ws_url, server.token(fresh_user("docs")), "chat-1", runs=2))
    assert names.count("agent_started") == 2
    assert names.count("agent_completed") == 2
    assert names[0] == "agent_started"
    assert names[-1] == "agent_completed"


def test_without_reconnect_a_lost_connection_stops_the_client(server: ServerProcess) -> None:
    async def scenario() -> None:
        client = wc.connect(server.ws_url, token=server.token(fresh_user("once")), reconnect=False)
        await client.start()
        await client.drop(clean=False)
        reason = await asyncio.wait_for(client.wait_closed(), 5.0)
        assert "reconnect disabled" in reason.why
        assert client.connections_opened == 1
        with pytest.raises(wc.ClientClosed):
            await client.wait_connected()

    asyncio.run(scenario())
