"""Release by ownership, on every path: close frames, TCP resets, resumes."""

import asyncio
import random

from wsguard.leaktest.verdict import histogram_buckets, histogram_quantile
from wsguard.processes import ServerProcess, StartServer, eventually
from wsguard.processes.clients import drop, open_socket, receive, send

USERS = 50
CYCLES = 2000


def test_connect_close_churn_leaves_nothing_behind(start_server: StartServer) -> None:
    """2,000 cycles over 50 users, half closed cleanly and half by a TCP abort."""
    server = start_server("--connect-rate-per-user", "0")
    idle_tasks = server.metrics()["wsguard_tasks_active"]
    tokens = [server.token(f"churn-{n}") for n in range(USERS)]

    async def user(token: str, cycles: int, offset: int) -> None:
        for cycle in range(cycles):
            socket, _ = await open_socket(server.ws_url, token, ping_interval=None)
            if (cycle + offset) % 2:
                drop(socket)
            else:
                await socket.close()

    async def churn() -> None:
        per_user = CYCLES // USERS
        await asyncio.gather(*(user(t, per_user, n) for n, t in enumerate(tokens)))

    asyncio.run(churn())
    metrics = server.wait_idle(timeout=5.0)
    assert metrics["wsguard_connections_opened_total"] == CYCLES
    assert metrics['wsguard_connections_closed_total{reason="connection_lost"}'] == CYCLES / 2
    assert metrics['wsguard_connections_closed_total{reason="client_closed"}'] == CYCLES / 2
    p99 = histogram_quantile(0.99, {}, histogram_buckets(metrics, "wsguard_cleanup_seconds"))
    assert p99 is not None
    assert p99 <= 0.020, f"cleanup p99 {p99 * 1000:.1f} ms"
    print(f"\ncleanup p99 over {CYCLES} cycles: {p99 * 1000:.2f} ms")
    # Records are released before a connection's tasks finish their close: the counts reach 0
    # first, and the tasks follow.
    eventually(
        server.metrics,
        lambda m: m["wsguard_tasks_active"] == idle_tasks,
        timeout=5.0,
        what=f"wsguard_tasks_active back to its idle {idle_tasks}",
    )
    assert metrics["wsguard_sweeper_repairs_total"] == 0


def test_resume_replaces_the_open_connection_of_the_session(server: ServerProcess) -> None:
    async def scenario() -> None:
        token = server.token("resumer")
        first, welcome = await open_socket(server.ws_url, token)
        second, again = await open_socket(server.ws_url, token, resume=welcome["session_id"])
        assert again["session_id"] == welcome["session_id"]
        assert again["connection_id"] != welcome["connection_id"]
        await asyncio.wait_for(first.wait_closed(), 5)
        assert (first.close_code, first.close_reason) == (4002, "replaced")
        listing = server.http.get(
            "/api/admin/users/resumer/connections", headers=server.auth("ops", admin=True)
        ).json()
        assert [c["connection_id"] for c in listing] == [again["connection_id"]]
        await second.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def test_resume_of_another_users_session_starts_a_new_one(server: ServerProcess) -> None:
    async def scenario() -> None:
        mallory_session = await open_socket(server.ws_url, server.token("mallory"))
        victim, victim_welcome = await open_socket(server.ws_url, server.token("victim"))
        socket, welcome = await open_socket(
            server.ws_url, server.token("mallory"), resume=victim_welcome["session_id"]
        )
        assert welcome["session_id"] != victim_welcome["session_id"]
        await send(victim, type="ping", ref=1)
        assert (await receive(victim))["type"] == "pong"
        for open_one in (socket, victim, mallory_session[0]):
            await open_one.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def test_admin_disconnect_closes_every_connection_with_4003(server: ServerProcess) -> None:
    async def scenario() -> None:
        token = server.token("kicked")
        sockets = [(await open_socket(server.ws_url, token))[0] for _ in range(3)]
        response = server.http.delete(
            "/api/admin/users/kicked/connections", headers=server.auth("ops", admin=True)
        )
        assert response.json() == {"closed": 3}
        for socket in sockets:
            await asyncio.wait_for(socket.wait_closed(), 5)
            assert socket.close_code == 4003

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)


def test_random_drops_mid_stream_leave_nothing(server: ServerProcess) -> None:
    """Sockets subscribed to a streaming run vanish at random points; every record goes."""
    rng = random.Random(7)

    async def scenario() -> None:
        token = server.token("dropper")
        for round_number in range(10):
            sockets = [(await open_socket(server.ws_url, token))[0] for _ in range(4)]
            for socket in sockets:
                await send(socket, type="subscribe", thread_id="stream", ref=round_number)
                assert (await receive(socket))["type"] == "subscribed"
            await send(sockets[0], type="message", thread_id="stream", text="go")
            await asyncio.sleep(rng.uniform(0, 0.03))
            for socket in sockets:
                if rng.random() < 0.5:
                    drop(socket)
                else:
                    await socket.close()

    asyncio.run(scenario())
    server.wait_idle(timeout=5.0)
