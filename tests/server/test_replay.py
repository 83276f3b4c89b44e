"""Retention and recovery over real sockets: replay after `since`, bounds by count and by age,
a new epoch after a restart, numbering that survives an expired log, no crossing between users."""

import asyncio
import time
from typing import Any

from wsguard.processes import ServerProcess, StartServer
from wsguard.processes.clients import Frame, open_socket, receive, send


def _publish(
    server: ServerProcess, user_id: str, thread_id: str, count: int, admin: dict[str, str]
) -> list[int]:
    offsets = []
    for n in range(count):
        body = {"user_id": user_id, "thread_id": thread_id, "event": "step", "data": {"n": n, "for": user_id}}
        response = server.http.post("/api/publish", json=body, headers=admin)
        offsets.append(response.json()["offset"])
    return offsets


async def _subscribe(
    server: ServerProcess, user_id: str, thread_id: str, since: dict[str, Any] | None
) -> tuple[list[Frame], Frame]:
    """Subscribe (with ``since``) and return the replayed events and the ``subscribed`` frame."""
    socket, _ = await open_socket(server.ws_url, server.token(user_id))
    if since is None:
        await send(socket, type="subscribe", thread_id=thread_id)
    else:
        await send(socket, type="subscribe", thread_id=thread_id, since=since)
    replayed = []
    while (frame := await receive(socket))["type"] == "event":
        replayed.append(frame)
    await socket.close()
    return replayed, frame


def test_since_replays_exactly_what_was_missed(server: ServerProcess) -> None:
    admin = server.auth("ops", admin=True)
    _, first = asyncio.run(_subscribe(server, "replayer", "r1", None))
    _publish(server, "replayer", "r1", 10, admin)
    replayed, subscribed = asyncio.run(
        _subscribe(server, "replayer", "r1", {"epoch": first["epoch"], "offset": 4})
    )
    assert [f["offset"] for f in replayed] == [5, 6, 7, 8, 9, 10]
    assert [f["data"]["n"] for f in replayed] == [4, 5, 6, 7, 8, 9]
    assert subscribed == {
        "type": "subscribed",
        "thread_id": "r1",
        "epoch": first["epoch"],
        "offset": 10,
        "recovered": True,
        "replayed": 6,
    }


def test_replay_never_crosses_users_sharing_a_thread_id(server: ServerProcess) -> None:
    admin = server.auth("ops", admin=True)
    _publish(server, "erin", "common", 3, admin)
    _publish(server, "frank", "common", 5, admin)
    _, probe = asyncio.run(_subscribe(server, "erin", "common", None))
    replayed, subscribed = asyncio.run(
        _subscribe(server, "erin", "common", {"epoch": probe["epoch"], "offset": 0})
    )
    assert [f["data"]["for"] for f in replayed] == ["erin"] * 3
    assert subscribed["offset"] == 3


def test_past_the_count_bound_recovery_fails(start_server: StartServer) -> None:
    server = start_server("--retention-events", "5")
    admin = server.auth("ops", admin=True)
    _, first = asyncio.run(_subscribe(server, "u", "t", None))
    _publish(server, "u", "t", 12, admin)
    lost, told = asyncio.run(_subscribe(server, "u", "t", {"epoch": first["epoch"], "offset": 2}))
    assert (lost, told["recovered"], told["replayed"], told["offset"]) == ([], False, 0, 12)
    kept, ok = asyncio.run(_subscribe(server, "u", "t", {"epoch": first["epoch"], "offset": 7}))
    assert [f["offset"] for f in kept] == [8, 9, 10, 11, 12]
    assert ok["recovered"] is True


def test_past_the_age_bound_recovery_fails_and_offsets_continue(start_server: StartServer) -> None:
    server = start_server("--retention-seconds", "0.3", "--demo-step-delay", "0")
    admin = server.auth("ops", admin=True)
    _, first = asyncio.run(_subscribe(server, "u", "aging", None))
    _publish(server, "u", "aging", 3, admin)
    assert server.metrics()["wsguard_thread_logs"] == 1
    time.sleep(0.4)
    lost, told = asyncio.run(_subscribe(server, "u", "aging", {"epoch": first["epoch"], "offset": 1}))
    assert (lost, told["recovered"], told["offset"]) == ([], False, 3)
    assert server.metrics()["wsguard_thread_logs"] == 0
    assert _publish(server, "u", "aging", 2, admin) == [4, 5]


def test_expired_threads_are_remembered_up_to_a_count_then_restart_in_a_new_epoch(
    start_server: StartServer,
) -> None:
    server = start_server("--retention-seconds", "0.3", "--max-remembered-threads", "2")
    admin = server.auth("ops", admin=True)
    threads = ["old", "middle", "new"]
    for thread_id in threads:
        assert _publish(server, "u", thread_id, 1, admin) == [1]
    time.sleep(0.4)
    told = [asyncio.run(_subscribe(server, "u", t, None))[1] for t in threads]
    epoch = told[0]["epoch"]
    assert [(f["epoch"], f["offset"]) for f in told] == [(epoch, 1)] * 3
    _, forgotten = asyncio.run(_subscribe(server, "u", "old", {"epoch": epoch, "offset": 1}))
    assert (forgotten["recovered"], forgotten["offset"]) == (False, 0)
    assert forgotten["epoch"] != epoch, "numbering restarts in a new epoch"
    _, remembered = asyncio.run(_subscribe(server, "u", "new", {"epoch": epoch, "offset": 1}))
    assert (remembered["recovered"], remembered["offset"], remembered["epoch"]) == (True, 1, epoch)
    assert _publish(server, "u", "new", 1, admin) == [2]
    assert _publish(server, "u", "old", 1, admin) == [1]


def test_after_a_restart_the_epoch_differs_and_recovery_fails() -> None:
    with ServerProcess() as before:
        _, first = asyncio.run(_subscribe(before, "u", "t", None))
        _publish(before, "u", "t", 3, before.auth("ops", admin=True))
    with ServerProcess() as after:
        replayed, told = asyncio.run(_subscribe(after, "u", "t", {"epoch": first["epoch"], "offset": 1}))
    assert told["epoch"] != first["epoch"]
    assert (replayed, told["recovered"]) == ([], False)


def test_replay_of_a_thousand_events(start_server: StartServer) -> None:
    """The figure for replay time: 1,000 retained events to one subscriber."""
    server = start_server()
    admin = server.auth("ops", admin=True)
    _, first = asyncio.run(_subscribe(server, "bulk", "big", None))
    _publish(server, "bulk", "big", 1000, admin)
    started = time.perf_counter()
    replayed, told = asyncio.run(_subscribe(server, "bulk", "big", {"epoch": first["epoch"], "offset": 0}))
    elapsed = time.perf_counter() - started
    assert [f["offset"] for f in replayed] == list(range(1, 1001))
    assert told["replayed"] == 1000
    print(f"replayed 1000 events in {elapsed * 1000:.1f} ms (connect, subscribe, receive all)")


def test_a_replay_larger_than_the_queue_limit_streams_instead_of_cutting_off(
    start_server: StartServer,
) -> None:
    """200 retained events of 10 KB (2 MB) replayed to a reader with a 64 KiB queue limit."""
    server = start_server("--queue-limit-bytes", "65536", "--retention-events", "500")
    admin = server.auth("ops", admin=True)
    _, first = asyncio.run(_subscribe(server, "big-backlog", "t", None))
    for n in range(200):
        body = {
            "user_id": "big-backlog",
            "thread_id": "t",
            "event": "e",
            "data": {"n": n, "pad": "x" * 10_000},
        }
        assert server.http.post("/api/publish", json=body, headers=admin).status_code == 200
    replayed, told = asyncio.run(
        _subscribe(server, "big-backlog", "t", {"epoch": first["epoch"], "offset": 0})
    )
    assert [f["data"]["n"] for f in replayed] == list(range(200))
    assert (told["recovered"], told["replayed"]) == (True, 200)
    metrics = server.wait_idle(timeout=5.0)
    assert metrics.get('wsguard_connections_closed_total{reason="slow_consumer"}', 0) == 0
